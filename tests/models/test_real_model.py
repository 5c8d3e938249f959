"""Real behaviour with the embedded SmolLM2-135M-Instruct (the model users run first)."""

from __future__ import annotations

import pytest

from magpie.engines.hf import HFEngine
from magpie.instructions import InstructionJob
from magpie.models import DEFAULT_MODEL
from magpie.profiles import get_profile
from magpie.records import read_records
from magpie.responses import ResponseJob

TEMPLATE_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|", "|>")


@pytest.fixture(scope="module")
def smol(embedded_dir):
    return HFEngine(DEFAULT_MODEL, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def instructions(smol, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "smol_ins.json"
    profile = get_profile(DEFAULT_MODEL, smol.tokenizer)
    job = InstructionJob(
        profile,
        out,
        model_name=DEFAULT_MODEL,
        total_prompts=32,
        n=32,
        temperature=1.0,
        top_p=0.9,
        max_tokens=128,
        early_stopping=False,
        seed=1234,
    )
    summary = job.run(smol)
    assert summary.records_out == 32
    return out, read_records(out)


def test_profile_keeps_the_default_system_turn(smol):
    profile = get_profile(DEFAULT_MODEL, smol.tokenizer)
    assert profile.pre_query_template.startswith(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM"
    )
    assert profile.pre_query_template.endswith("<|im_start|>user\n")


def test_extracted_instructions_are_well_formed(instructions):
    _, records = instructions
    good = [
        r for r in records if r["instruction"] and r["instruction_finish_reason"] == "end_of_turn"
    ]
    assert len(good) >= 0.8 * len(records), [r["instruction"] for r in records]
    for r in records:
        assert not any(t in r["instruction"] for t in TEMPLATE_TOKENS), r["instruction"]
        assert (r["instruction_flag"] is None) == (r in good)
    assert len({r["instruction"] for r in good}) == len(good)  # sampled, not repeated


def test_responses_answer_the_instructions(smol, instructions, tmp_path):
    path, records = instructions
    subset = tmp_path / "subset_ins.json"
    import json

    subset.write_text(json.dumps(records[:6]))
    job = ResponseJob(
        get_profile(DEFAULT_MODEL, smol.tokenizer), subset, model_name=DEFAULT_MODEL, max_tokens=320
    )
    summary = job.run(smol)
    out = read_records(tmp_path / "subset_ins_res.json")
    assert summary.records_out == 6
    answered = [r for r in out if r["response_flag"] is None]
    assert answered  # greedy SmolLM2 loops on some prompts; those are flagged, not hidden
    for r in out:
        if r["instruction_flag"]:
            assert r["response"] is None and r["response_flag"] == "skipped"
            continue
        assert r["response"] and not any(t in r["response"] for t in TEMPLATE_TOKENS)
        assert (r["response_flag"] == "unfinished") == (r["response_finish_reason"] == "length")
        prompt = r["gen_response_configs"]["prompt"]
        assert prompt.endswith(r["instruction"] + "<|im_end|>\n<|im_start|>assistant\n")
