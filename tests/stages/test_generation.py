"""Instruction and response stages: records, resume after SIGKILL, bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from magpie.records import InputError, read_records, state_path

PY = sys.executable


def load_exp(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "exp" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_ins = load_exp("gen_ins")
gen_res = load_exp("gen_res")


def journal_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def ins_args(model_dir, out, total=300, extra=()):
    return [
        PY,
        str(REPO / "exp" / "gen_ins.py"),
        "--model_path",
        str(model_dir),
        "--total_prompts",
        str(total),
        "--n",
        "7",
        "--max_tokens",
        "6",
        "--batch_size",
        "8",
        "--output_folder",
        str(out),
        "--timestamp",
        "1000",
        "--seed",
        "3",
        *extra,
    ]


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "created"} for r in records]


def test_gen_ins_resumes_after_sigkill_with_nothing_lost_or_doubled(tiny_model_dir, tmp_path):
    """Killed at three points and resumed, the run writes exactly the records of an
    uninterrupted run with the same seed: ids, and the text of every instruction."""
    ref_out = tmp_path / "reference"
    ref = subprocess.run(ins_args(tiny_model_dir, ref_out), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    reference = json.loads(
        (ref_out / f"Magpie_{tiny_model_dir.name}_300_1000_ins.json").read_text()
    )
    out = tmp_path / "out"
    final = out / f"Magpie_{tiny_model_dir.name}_300_1000_ins.json"
    journal = state_path(final, ".journal.jsonl")
    kills = 0
    for threshold in (15, 90, 200):  # kill at three different points of the run
        proc = subprocess.Popen(
            ins_args(tiny_model_dir, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 120
        while journal_lines(journal) < threshold and proc.poll() is None:
            assert time.time() < deadline
            time.sleep(0.02)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert not final.exists()
    assert kills >= 2
    done = subprocess.run(ins_args(tiny_model_dir, out), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resumed from journal" in done.stdout
    records = json.loads(final.read_text())
    assert [r["id"] for r in records] == list(range(300))
    assert not journal.exists()
    assert all(r["gen_input_configs"]["seed"] == 3 for r in records)
    assert without_time(records) == without_time(reference)
    # Sampled text, not a constant: a random model at temperature 1 over a 49k vocabulary.
    assert len({r["instruction"] for r in records}) > 290
    # A rerun of a finished job changes nothing.
    before = final.read_bytes()
    again = subprocess.run(ins_args(tiny_model_dir, out), capture_output=True, text=True)
    assert again.returncode == 0 and "already complete" in again.stdout
    assert final.read_bytes() == before


def test_a_short_last_round_repeats_no_round(tiny_model_dir, tmp_path):
    """20 prompts with n 8: rounds of 8, 8 and 4 go out in two engine calls; the short
    round's samples must not reuse the first round's seeds (they were records 0-3 again)."""
    from magpie.engines.base import item_seeds

    gen_ins.main(
        model_path=str(tiny_model_dir),
        total_prompts=20,
        n=8,
        max_tokens=6,
        output_folder=str(tmp_path),
        job_name="job",
        timestamp=1,
        seed=7,
        shuffle=False,
    )
    records = read_records(tmp_path / "job" / f"Magpie_{tiny_model_dir.name}_20_1_ins.json")
    texts = [r["instruction"] for r in records]
    assert texts[16:20] != texts[0:4]
    assert len(set(texts)) == 20
    # By construction: sample j of round r draws from stage_seed + 8 r + j, the record id.
    seeds = item_seeds(7, "gen_ins", [0, 1, 2], n=8)
    sample_seeds = [s + j for s, size in zip(seeds, (8, 8, 4), strict=True) for j in range(size)]
    assert sample_seeds == [seeds[0] + i for i in range(20)]


def test_item_seeds_are_keyed_by_item_and_stage():
    from magpie.engines.base import item_seeds, stage_seed

    a = item_seeds(1, "gen_res", [0, 1, 2], n=3)
    assert a == [stage_seed(1, "gen_res") + 3 * k for k in (0, 1, 2)]
    assert item_seeds(1, "gen_res", [2], n=3) == a[2:]  # by key, not position in a call
    assert item_seeds(None, "gen_res", [0]) is None
    bases = {stage_seed(s, st) for s in range(50) for st in ("gen_ins", "gen_res", "gen_mt/0")}
    assert len(bases) == 150 and all(0 <= b < 2**31 for b in bases)


def test_journal_with_other_settings_is_refused(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    final = out / f"Magpie_{tiny_model_dir.name}_300_1000_ins.json"
    state_path(final, ".journal.jsonl").parent.mkdir(parents=True)
    state_path(final, ".journal.jsonl").write_text(json.dumps({"__journal__": {"n": 1}}) + "\n")
    r = subprocess.run(ins_args(tiny_model_dir, out), capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "other settings" in r.stderr and "Loading weights" not in r.stderr


def test_exact_total_and_record_fields(tiny_model_dir, tmp_path):
    gen_ins.main(
        model_path=str(tiny_model_dir),
        total_prompts=10,
        n=4,
        max_tokens=5,
        batch_size=8,
        output_folder=str(tmp_path),
        job_name="job",
        timestamp=5,
        sanitize=True,
    )
    path = tmp_path / "job" / f"Magpie_{tiny_model_dir.name}_10_5_ins.json"
    records = read_records(path)
    assert len(records) == 10  # not ceil(10/4)*4
    r = records[0]
    assert list(r)[:2] == ["id", "pre_query_template"]
    assert {
        "raw_instruction",
        "instruction_sanitize_class_num",
        "instruction_flag",
        "instruction_finish_reason",
        "created",
        "gen_input_configs",
    } <= set(r)
    assert r["response"] is None and r["gen_response_configs"] is None
    assert r["gen_input_configs"]["seed"] == 5  # the effective seed: the timestamp
    # A random model never closes its turn in 5 tokens: every record is flagged, none dropped.
    assert {x["instruction_flag"] for x in records} <= {"unfinished", "empty"}
    assert all(x["instruction_finish_reason"] == "length" for x in records)


def test_gen_res_skips_flagged_and_resumes(tiny_model_dir, tmp_path):
    records = [
        {"id": 0, "instruction": "Say hi", "instruction_flag": None},
        {"id": 1, "instruction": "", "instruction_flag": "empty"},
        {"id": 2, "instruction": "Count to three", "instruction_flag": None},
    ]
    src = tmp_path / "x_ins.json"
    src.write_text(json.dumps(records))
    out = tmp_path / "x_ins_res.json"
    # A journal from a killed run already holds record 2; it must not be redone.
    journal = state_path(out, ".journal.jsonl")
    gen_res.main(input_file=str(src), model_path=str(tiny_model_dir), max_tokens=4)
    first = read_records(out)
    out.unlink()
    fp = None
    # Rebuild the same journal state by hand: header + record 2, then a torn line.
    import magpie.responses as responses_mod  # noqa: F401

    lines = []
    gen_res_fp = {
        "stage": "gen_res",
        "input": str(src.resolve()),
        "records": 3,
        "model": str(tiny_model_dir),
        "temperature": 0.0,
        "top_p": 1.0,
        "repetition_penalty": 1.0,
        "max_tokens": 4,
        "seed": fp,
    }
    lines.append(json.dumps({"__journal__": gen_res_fp}))
    lines.append(json.dumps({"key": 2, "record": {**first[2], "response": "FROM-JOURNAL"}}))
    journal.write_text("\n".join(lines) + "\n" + '{"key": 0, "rec')
    gen_res.main(input_file=str(src), model_path=str(tiny_model_dir), max_tokens=4)
    second = read_records(out)
    assert [r["id"] for r in second] == [0, 1, 2]
    assert second[2]["response"] == "FROM-JOURNAL"
    assert second[0]["response"] == first[0]["response"]
    assert second[1]["response"] is None and second[1]["response_flag"] == "skipped"
    cfg = second[0]["gen_response_configs"]
    assert cfg["prompt"].endswith("<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n")
    assert cfg["output_generator"] == str(tiny_model_dir) and cfg["engine"] == "hf"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "file not found"),
        ("", "file is empty"),
        ('{"instruction": "a"}\n{"instruction": "b"\n', ":2: malformed JSON"),
        ('{"instruction": 3}\n', ":1: field 'instruction' is not a string"),
        ('{"question": "a"}\n', ":1: no user turn to answer"),
    ],
)
def test_gen_res_bad_input_names_file_and_line(tmp_path, tiny_model_dir, content, message):
    """Through the gen_res command: the message names the file (and line), and neither a
    new output nor a journal is written, an earlier output is left as it was."""
    src = tmp_path / "in.jsonl"
    if content is not None:
        src.write_text(content)
    with pytest.raises(InputError, match=message) as e:
        gen_res.main(input_file=str(src), model_path=str(tiny_model_dir), max_tokens=4)
    assert str(src) in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["in.jsonl"] if content is not None else []
    )
    # An output of an earlier run is not overwritten or half-written.
    out = tmp_path / "in_res.json"
    out.write_text("EARLIER")
    with pytest.raises(InputError, match=message):
        gen_res.main(input_file=str(src), model_path=str(tiny_model_dir), max_tokens=4)
    assert out.read_text() == "EARLIER"
    assert not state_path(out, ".journal.jsonl").exists()


def run_cli(args):
    return subprocess.run([PY, *args], capture_output=True, text=True)


def test_cli_bad_inputs_exit_nonzero_with_one_line(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok"}\nnot json\n')
    r = run_cli(
        [
            str(REPO / "exp" / "gen_res.py"),
            "--input_file",
            str(bad),
            "--model_path",
            str(tiny_model_dir),
        ]
    )
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {bad}:2: malformed JSON (Expecting value)"
    assert not (tmp_path / "bad_res.json").exists()
    r = run_cli(
        [
            str(REPO / "exp" / "gen_ins.py"),
            "--logits_processor",
            "--flaming_tokens",
            "--output_folder",
            str(tmp_path),
        ]
    )
    assert r.returncode == 2 and "cannot be used together" in r.stderr


def test_model_without_profile_or_chat_template(tiny_model_dir, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="no chat template"):
        gen_ins.main(model_path=str(bare), total_prompts=2, output_folder=str(tmp_path))
    assert not list(tmp_path.glob("*.json"))


def test_control_task_without_template(tiny_model_dir, tmp_path):
    """A chat template with no system turn (Gemma style) has no math variant."""
    import shutil

    gemma = tmp_path / "gemma-like"
    shutil.copytree(tiny_model_dir, gemma)
    template = (REPO / "tests/fixtures/chat_templates/gemma2.jinja").read_text()
    (gemma / "chat_template.jinja").write_text(template)
    with pytest.raises(InputError, match="control task 'math'"):
        gen_ins.main(
            model_path=str(gemma),
            total_prompts=2,
            control_tasks="math",
            output_folder=str(tmp_path),
        )
    with pytest.raises(InputError, match="--control_tasks must be one of"):
        gen_ins.main(model_path=str(gemma), control_tasks="poetry", output_folder=str(tmp_path))


# ------------------------------------------------------------------ thinking models
@pytest.mark.parametrize(
    "text, opened, expected",
    [
        ("Plain answer.", False, (None, "Plain answer.", True)),
        ("<think>\nLet me see.\n</think>\n\nFour.", False, ("Let me see.", "Four.", True)),
        ("Let me see.\n</think>\n\nFour.", True, ("Let me see.", "Four.", True)),  # R1-style
        ("<think>\nStill going", False, ("Still going", "", False)),
        ("<think>\n\n</think>\n\nFour.", False, (None, "Four.", True)),
        ("Use </think> to close.", False, (None, "Use </think> to close.", True)),
    ],
)
def test_split_reasoning(text, opened, expected):
    from magpie.completion import split_reasoning

    assert split_reasoning(text, opened) == expected


def test_thinking_responses_keep_the_answer_and_flag_unclosed_thoughts(tmp_path):
    from magpie.engines.base import Completion
    from magpie.profiles import Profile
    from magpie.responses import ResponseJob

    src = tmp_path / "x.json"
    src.write_text(json.dumps([{"id": 0, "instruction": "2+2?"}]))
    profile = Profile(
        name="m", pre_query_template="<|im_start|>user\n", stop_tokens=[], stop_token_ids=[]
    )

    def answer(num_samples, texts, reasons):
        job = ResponseJob(
            profile,
            src,
            tmp_path / "o.json",
            model_name="m",
            num_samples=num_samples,
            temperature=0.8,  # n samples of greedy decoding would be copies: refused
        )
        job.journal.close()
        cs = [Completion(text=t, finish_reason=r) for t, r in zip(texts, reasons, strict=True)]
        return job._answer(cs, opened=False)

    one = answer(None, ["<think>2 and 2.</think>\n\nFour."], ["stop"])
    assert (one["response"], one["reasoning"], one["response_flag"]) == ("Four.", "2 and 2.", None)
    many = answer(2, ["<think>2 and 2.</think>Four.", "<think>Hmm, 2 and"], ["stop", "length"])
    assert many["responses"] == ["Four.", ""]
    assert many["reasonings"] == ["2 and 2.", "Hmm, 2 and"]
    assert many["response_flags"] == [None, "unfinished"]


def test_enable_thinking_reaches_the_chat_template(tiny_model_dir, smol_tokenizer, tmp_path):
    """Qwen3's template: False appends an empty think block to the prompt, so the model
    answers without thinking; the default leaves the choice to the model."""
    import copy

    from conftest import FIXTURES

    from magpie.engines.hf import HFEngine
    from magpie.profiles import get_profile
    from magpie.responses import ResponseJob

    tokenizer = copy.deepcopy(smol_tokenizer)
    tokenizer.chat_template = (FIXTURES / "chat_templates" / "qwen3.jinja").read_text()
    engine = HFEngine(str(tiny_model_dir), tokenizer=tokenizer, batch_size=2)
    src = tmp_path / "x.json"
    src.write_text(json.dumps([{"id": 0, "instruction": "2+2?"}]))
    prompts = {}
    for thinking in (None, False):
        out = tmp_path / f"{thinking}.json"
        job = ResponseJob(
            get_profile("Qwen/Qwen3-8B", tokenizer),
            src,
            out,
            model_name="qwen3-tiny",
            max_tokens=3,
            enable_thinking=thinking,
        )
        job.run(engine)
        (record,) = read_records(out)
        assert record["gen_response_configs"]["enable_thinking"] is thinking
        assert "reasoning" in record
        prompts[thinking] = record["gen_response_configs"]["prompt"]
    with pytest.raises(InputError, match="--enable_thinking must be True or False"):
        ResponseJob(
            get_profile("Qwen/Qwen3-8B", tokenizer), src, model_name="q", enable_thinking="no"
        )
    assert prompts[None].endswith("<|im_start|>assistant\n")
    assert prompts[False] == prompts[None] + "<think>\n\n</think>\n\n"


def test_read_completion_flags_and_user_turns_are_taken_as_they_are():
    from magpie.completion import read_completion
    from magpie.engines.base import Completion

    assert read_completion(Completion("<think>a</think>B", "stop")) == ("a", "B", None)
    assert read_completion(Completion("<think>a</think>", "stop")) == ("a", "", "empty")
    assert read_completion(Completion("<think>a", "stop")) == ("a", "", "unfinished")
    assert read_completion(Completion("Long answer", "length")) == (
        None,
        "Long answer",
        "unfinished",
    )
    user_turn = Completion("<think>a question?", "stop")
    assert read_completion(user_turn, thinking=False) == (None, "<think>a question?", None)


# ------------------------------------------------------------ harmony (gpt-oss) answers
HARMONY_RAW = (
    "<|channel|>analysis<|message|>User wants a haiku. Count syllables.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Leaves fall, red and gold.<|return|>"
)


@pytest.mark.parametrize(
    "text, finish, expected",
    [
        # issue 13: the answer cut at <|message|>, special tokens dropped by the engine
        ("analysis", "stop", (None, "", "unfinished")),
        ("final", "stop", (None, "", "empty")),  # a final channel with nothing in it
        (
            HARMONY_RAW,
            "stop",
            ("User wants a haiku. Count syllables.", "Leaves fall, red and gold.", None),
        ),
        (  # the same answer from an engine that drops special tokens (vLLM)
            "analysisUser wants a haiku. Count syllables.assistantfinalLeaves fall, red and gold.",
            "stop",
            ("User wants a haiku. Count syllables.", "Leaves fall, red and gold.", None),
        ),
        ("finalJust the answer.", "stop", (None, "Just the answer.", None)),  # no analysis
        (  # max_tokens inside the analysis: no answer
            "<|channel|>analysis<|message|>User wants a haiku. Count",
            "length",
            ("User wants a haiku. Count", "", "unfinished"),
        ),
        # ordinary answers that start with the words stay as they are
        (
            "Analysis of the data shows growth.",
            "stop",
            (None, "Analysis of the data shows growth.", None),
        ),
        ("final answer: 42", "stop", (None, "final answer: 42", None)),
        ("finally, it works.", "stop", (None, "finally, it works.", None)),
    ],
)
def test_harmony_channels_final_is_the_response_analysis_the_reasoning(text, finish, expected):
    from magpie.completion import read_completion
    from magpie.engines.base import Completion

    assert read_completion(Completion(text, finish)) == expected


def test_gpt_oss_responses_stop_at_return_and_store_the_final_channel(tmp_path):
    from magpie.engines.base import Completion
    from magpie.profiles import get_profile
    from magpie.responses import ResponseJob

    src = tmp_path / "x.json"
    src.write_text(json.dumps([{"id": 0, "instruction": "A haiku about autumn."}]))
    job = ResponseJob(get_profile("openai/gpt-oss-20b"), src, tmp_path / "o.json", model_name="g")
    job.journal.close()
    assert job.params.stop == ["<|return|>", "<|call|>"]
    assert job.params.stop_token_ids == [200002, 200012]
    out = job._answer([Completion(HARMONY_RAW, "stop")], opened=False)
    assert out["response"] == "Leaves fall, red and gold."
    assert out["reasoning"] == "User wants a haiku. Count syllables."
    assert out["response_flag"] is None
    cut = job._answer([Completion("analysis", "stop")], opened=False)
    assert (cut["response"], cut["response_flag"]) == ("", "unfinished")
