"""Concatenation and ShareGPT export: ids across shards, every input shape, labels,
OpenAI messages, round trips, datasets on disk, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from magpie.conversation import openai_messages, sharegpt_turns
from magpie.conversation import read as conversation
from magpie.records import InputError
from magpie.sharegpt import (
    KEY_ORDER,
    check_labels,
    concatenate,
    conversations_of,
    to_sharegpt,
)

REPO = Path(__file__).resolve().parents[2]


def tagged(i: int, **extra) -> dict:
    """A record as gen_res + unitag write it."""
    record = {
        "id": i,
        "pre_query_template": "<|im_start|>user\n",
        "instruction": f"Question {i}?",
        "response": f"Answer {i}.",
        "created": 1700000000,
        "gen_input_configs": {"temperature": 1.0, "top_p": 1.0, "input_generator": "m"},
        "gen_response_configs": {"output_generator": "m"},
        "intent": "The user wants to know",
        "knowledge": "Some facts",
        "difficulty": "easy",
        "input_quality": "good",
        "task_category": "Others",
        "other_task_category": ["Math", "Other"],
        "instruct_reward": 0.5,
        "language": "EN",
    }
    record.update(extra)
    return record


def write(path: Path, records: list[dict], jsonl: bool = False) -> Path:
    if jsonl:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records, indent=2))
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_shards_numbered_across_and_shaped_like_the_original(tmp_path):
    a = write(tmp_path / "a.json", [tagged(0), tagged(1)])
    b = write(tmp_path / "b.jsonl", [tagged(0), tagged(1), tagged(2)], jsonl=True)
    result = concatenate([str(a), str(b)], id_prefix="Magpie-X", progress=False)
    out = tmp_path / "Magpie-X_sharegpt.jsonl"
    assert result["output"] == str(out) and result["records"] == 5
    rows = read(out)
    assert [r["conversation_id"] for r in rows] == [f"Magpie-X_{n}" for n in range(5)]
    first = rows[0]
    present = [k for k in KEY_ORDER if k in first]
    assert list(first)[: len(present)] == present  # the original's key order first
    assert first["conversations"] == [
        {"from": "human", "value": "Question 0?"},
        {"from": "gpt", "value": "Answer 0."},
    ]
    assert first["gen_input_configs"]["pre_query_template"] == "<|im_start|>user\n"
    assert "id" not in first and "pre_query_template" not in first
    assert first["created"] == 1700000000  # other fields are kept
    assert first["task_category"] == "Others"  # the original's whitelist nulled this
    assert first["other_task_category"] == ["Math"]
    assert first["invalid_labels"] == {"other_task_category": ["Other"]}


def test_invalid_labels_nulled_and_kept_aside():
    rec = check_labels(
        {"difficulty": "Very Hard", "input_quality": "great", "task_category": "Other"}
    )
    assert rec["difficulty"] == "very hard"
    assert rec["input_quality"] is None and rec["task_category"] is None
    assert rec["invalid_labels"] == {"input_quality": "great", "task_category": "Other"}


def test_multi_turn_flat_keys_and_system_prompt():
    rec = tagged(
        0,
        instruction_2="More?",
        response_2="More.",
        instruction_3="Last?",
        system_prompt="Be brief.",
    )
    turns = conversations_of(rec)
    # the unanswered third instruction is not a complete exchange: it is left out
    assert turns == [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Question 0?"},
        {"from": "gpt", "value": "Answer 0."},
        {"from": "human", "value": "More?"},
        {"from": "gpt", "value": "More."},
    ]
    assert [t["from"] for t in conversations_of(rec, include_system=False)][0] == "human"


def test_conversation_lists_and_missing_flat_fields():
    conv = [
        {"role": "system", "content": "You are kind."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Bye!"},
    ]
    out = to_sharegpt({"conversation": conv, "model_name": "m"}, "p_0")
    assert out["instruction"] == "Hi" and out["response"] == "Hello!"
    assert "conversation" not in out and out["model_name"] == "m"
    assert openai_messages(conversation(out)) == conv
    assert sharegpt_turns(conversation({"messages": conv})) == out["conversations"]


def test_round_trip_sharegpt_messages_sharegpt(tmp_path):
    records = [
        tagged(0),
        tagged(1, instruction_2="Again?", response_2="Again."),
        tagged(2, response=None),
    ]
    src = write(tmp_path / "s.json", records)
    out = tmp_path / "one.jsonl"
    msgs = tmp_path / "one_messages.jsonl"
    result = concatenate(str(src), out, id_prefix="p", messages_file=msgs, progress=False)
    assert result["messages"] == 1  # the record without a response cannot train
    assert result["no response"] == 1
    lines = read(msgs)
    assert len(lines) == 2 and list(lines[1]) == ["messages"]
    assert [m["role"] for m in lines[1]["messages"]] == ["user", "assistant", "user", "assistant"]
    # ShareGPT in → identical conversations out (a second concatenation renumbers only)
    again = tmp_path / "two.jsonl"
    concatenate(str(out), again, id_prefix="q", start_id=10, progress=False)
    first, second = read(out), read(again)
    assert [r["conversations"] for r in first] == [r["conversations"] for r in second]
    assert [r["conversation_id"] for r in second] == ["q_10", "q_11", "q_12"]
    for r in first:
        messages = openai_messages(conversation(r))
        assert sharegpt_turns(conversation({"messages": messages})) == r["conversations"]


def test_dataset_saved_to_disk(tmp_path):
    import datasets

    src = write(tmp_path / "s.json", [tagged(i) for i in range(3)])
    concatenate(
        str(src), tmp_path / "o.jsonl", id_prefix="d", dataset_dir=tmp_path / "ds", progress=False
    )
    ds = datasets.load_from_disk(str(tmp_path / "ds"))
    assert ds.num_rows == 3 and ds[2]["conversation_id"] == "d_2"
    assert ds[0]["conversations"][1] == {"from": "gpt", "value": "Answer 0."}


def test_globs_and_comma_lists(tmp_path):
    for i in range(3):
        write(tmp_path / f"shard{i}.json", [tagged(0)])
    concatenate(str(tmp_path / "shard*.json"), tmp_path / "g.jsonl", id_prefix="g", progress=False)
    assert len(read(tmp_path / "g.jsonl")) == 3
    concatenate(
        f"{tmp_path}/shard0.json,{tmp_path}/shard2.json", tmp_path / "c.jsonl", progress=False
    )
    assert [r["conversation_id"] for r in read(tmp_path / "c.jsonl")] == ["magpie_0", "magpie_1"]


@pytest.mark.parametrize(
    "records, message",
    [
        (
            [{"conversations": [{"from": "robot", "value": "x"}]}],
            r"b\.jsonl:2: conversations: bad turn 0 .*'robot'",
        ),
        ([{"messages": [{"role": "user"}]}], r"b\.jsonl:2: messages: turn 0 without text"),
    ],
)
def test_bad_records_named_and_nothing_written(tmp_path, records, message):
    good = write(tmp_path / "a.json", [tagged(0)])
    bad = write(tmp_path / "b.jsonl", [tagged(1)] + records, jsonl=True)
    out = tmp_path / "out.jsonl"
    with pytest.raises(InputError, match=message):
        concatenate([str(good), str(bad)], out, progress=False)
    assert not out.exists()


def test_missing_shards_refused(tmp_path):
    with pytest.raises(InputError, match="no file matches"):
        concatenate(str(tmp_path / "*.json"), tmp_path / "o.jsonl", progress=False)
    with pytest.raises(InputError, match="file not found"):
        concatenate(str(tmp_path / "x.json"), tmp_path / "o.jsonl", progress=False)


def test_cli(tmp_path):
    a = write(tmp_path / "a.json", [tagged(0)])
    b = write(tmp_path / "b.json", [tagged(0)])
    proc = subprocess.run(
        [sys.executable, str(REPO / "exp" / "concat.py"), str(a), str(b), "--id_prefix", "cli"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[concat] shards 2, records in 2, out 2" in proc.stdout
    assert [r["conversation_id"] for r in read(tmp_path / "cli_sharegpt.jsonl")] == [
        "cli_0",
        "cli_1",
    ]
    proc = subprocess.run(
        [sys.executable, str(REPO / "exp" / "concat.py"), str(tmp_path / "nope.json")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "nope.json: file not found" in proc.stderr


def test_reasoning_left_out_unless_asked(tmp_path):
    single = {"id": 0, "instruction": "2+2?", "response": "Four.", "reasoning": "2 and 2."}
    talk = {
        "id": 1,
        "conversation": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello.", "reasoning": "Greet back."},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Bye!"},
        ],
    }
    shard = tmp_path / "s.jsonl"
    shard.write_text("\n".join(json.dumps(r) for r in (single, talk)) + "\n")
    for with_reasoning in (False, True):
        out = tmp_path / f"{with_reasoning}.jsonl"
        concatenate([str(shard)], out, with_reasoning=with_reasoning, progress=False)
        a, b = (json.loads(x) for x in out.read_text().splitlines())
        answers = [t["value"] for r in (a, b) for t in r["conversations"] if t["from"] == "gpt"]
        if with_reasoning:
            assert answers == [
                "<think>\n2 and 2.\n</think>\n\nFour.",
                "<think>\nGreet back.\n</think>\n\nHello.",
                "Bye!",
            ]
        else:
            assert answers == ["Four.", "Hello.", "Bye!"]
        assert a["response"] == "Four." and a["reasoning"] == "2 and 2."
