"""gen_res on inputs that are not Magpie instruction records: conversations ending on a
user turn are answered (the answer becomes their next assistant turn), complete ones are
left as they are, and records with no user turn to answer are refused with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import chained_llama

from magpie.engines.hf import HFEngine
from magpie.profiles import get_profile
from magpie.records import InputError, read_records, write_records
from magpie.responses import ResponseJob

ROOT = Path(__file__).resolve().parents[2]
ANSWER = " Paris is the capital."


@pytest.fixture(scope="module")
def answering(smol_tokenizer):
    """A tiny Llama whose greedy answer after any assistant header ("assistant\\n") is
    ANSWER and then <|im_end|>: each layer adds nothing, so the next token depends on the
    current one only (the chain below)."""
    tok = smol_tokenizer
    chain = [tok("\n", add_special_tokens=False).input_ids[-1]]
    chain += tok(ANSWER.strip(), add_special_tokens=False).input_ids
    chain += [tok.convert_tokens_to_ids("<|im_end|>")]
    model = chained_llama(tok, chain)
    return HFEngine("tiny", model=model, tokenizer=tok, batch_size=4)


def run_job(engine, tmp_path, records, max_tokens=16, **kwargs):
    src = tmp_path / "in.json"
    write_records(src, records)
    job = ResponseJob(
        get_profile("tiny", engine.tokenizer),
        src,
        model_name="tiny",
        max_tokens=max_tokens,
        **kwargs,
    )
    summary = job.run(engine)
    return read_records(job.journal.output), summary


def test_conversations_ending_on_a_user_turn_get_the_answer_as_their_next_turn(
    answering, tmp_path, monkeypatch
):
    tok = answering.tokenizer
    seen = []
    original = HFEngine.encode
    monkeypatch.setattr(HFEngine, "encode", lambda s, p: seen.append(original(s, p)) or seen[-1])
    messages = [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "Capital of Italy?"},
        {"role": "assistant", "content": "Rome."},
        {"role": "user", "content": "And of France?"},
    ]
    sharegpt = [{"from": "human", "value": "Capital of France?"}]
    records = [
        {"id": "m", "messages": messages},
        {"id": "s", "conversations": sharegpt},
        {"id": "i", "input": "Capital of France?"},
        {"id": "done", "messages": messages[:3]},  # already ends on an answer
    ]
    out, summary = run_job(answering, tmp_path, records)
    # The prompt of the first is transformers' own rendering of the whole conversation.
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert seen[0] == tok(rendered, add_special_tokens=False).input_ids
    assert len(seen) == 3  # the complete conversation was not sent
    m, s, i, done = out
    assert m["messages"] == [*messages, {"role": "assistant", "content": ANSWER.strip()}]
    assert m["response_2"] == ANSWER.strip() and m["instruction_2"] == "And of France?"
    assert m["response_flag"] is None and m["response_finish_reason"] == "stop"
    assert s["conversations"] == [*sharegpt, {"from": "gpt", "value": ANSWER.strip()}]
    assert i["response"] == ANSWER.strip() and i["conversation"][-1]["role"] == "assistant"
    assert done == records[3]
    assert summary.flags["already answered (left as it was)"] == 1


def test_an_unfinished_answer_adds_no_turn_and_keeps_its_text_beside_the_flag(answering, tmp_path):
    messages = [{"role": "user", "content": "Capital of France?"}]
    out, _ = run_job(answering, tmp_path, [{"messages": messages}], max_tokens=2)
    (record,) = out
    assert record["messages"] == messages  # no assistant turn from a cut answer
    assert record["response_flag"] == "unfinished"
    assert record["response"] == "Paris is"  # the first two tokens of ANSWER


@pytest.mark.parametrize(
    "record, fields",
    [
        ({"prompt": "Capital of France?"}, "prompt"),  # a TRL prompt column
        ({"messages": [{"role": "system", "content": "S"}]}, "messages"),
        ({"messages": [{"role": "assistant", "content": "Hi"}]}, "messages"),
        ({"text": "hello"}, "text"),
    ],
)
def test_records_without_a_user_turn_are_refused_naming_file_record_and_fields(
    tmp_path, record, fields
):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"instruction": "ok"}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(InputError) as e:
        ResponseJob(_profile(), src, model_name="tiny")
    message = str(e.value)
    assert "in.jsonl:2" in message
    assert "no user turn to answer" in message and "'instruction'" in message
    assert fields in message


def _profile():
    from magpie.profiles import Profile

    return Profile("t", "<|im_start|>user\n", ["<|im_end|>"], [2])


def test_multi_response_stage_answers_instructions_only(tmp_path):
    src = tmp_path / "in.json"
    write_records(src, [{"messages": [{"role": "user", "content": "Hi"}]}])
    with pytest.raises(InputError, match="gen_po_multi_res answers 'instruction'"):
        ResponseJob(_profile(), src, model_name="tiny", num_samples=2)


def test_the_command_exits_2_with_one_line_and_writes_nothing(tmp_path, tiny_model_dir):
    src = tmp_path / "trl.jsonl"
    src.write_text(json.dumps({"prompt": "Capital of France?", "completion": "Paris"}) + "\n")
    out = subprocess.run(
        [sys.executable, "exp/gen_res.py", "--model_path", str(tiny_model_dir)]
        + ["--input_file", str(src), "--max_tokens", "2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2
    error = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "trl.jsonl" in error[0] and "no user turn" in error[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trl.jsonl"]
