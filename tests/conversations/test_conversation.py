"""One conversation model (magpie.conversation): every input format read the same way,
one rule for a complete exchange, and the stages (tagging, filter, concat) reading and
writing through it; no weights are loaded. gen_mt and gen_conv on it are tested in
test_multiturn.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from magpie.conversation import (
    Conversation,
    ConversationError,
    Turn,
    conversation_of,
    read,
    write_back,
)
from magpie.records import read_records

REPO = Path(__file__).resolve().parents[2]


def jsonl(path: Path) -> list[dict]:
    return read_records(path)


# ------------------------------------------------------------------- reading and the rule

EXPECTED = [
    ("system", "Be brief."),
    ("user", "Q1"),
    ("assistant", "A1"),
    ("user", "Q2"),
    ("assistant", "A2"),
]
SAME_TALK = {
    "flat": {
        "system_prompt": "Be brief.",
        "instruction": "Q1",
        "response": "A1",
        "instruction_2": "Q2",
        "response_2": "A2",
        "reasoning_2": "think 2",
    },
    "conversation": {
        "conversation": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2", "reasoning": "think 2"},
        ]
    },
    "messages": {
        "system_prompt": "Be brief.",
        "messages": [
            {"role": "user", "content": "Q1"},
            {"role": "tool", "content": "skipped"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": [{"type": "text", "text": "Q2"}]},
            {"role": "assistant", "content": "A2", "reasoning": "think 2"},
        ],
    },
    "sharegpt": {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Q1"},
            {"from": "gpt", "value": "A1"},
            {"from": "human", "value": "Q2"},
            {"from": "gpt", "value": "A2", "reasoning": "think 2"},
        ]
    },
    "sharegpt_roles": {
        "conversations": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2", "reasoning": "think 2"},
        ]
    },
}


@pytest.mark.parametrize("name", SAME_TALK)
def test_every_format_reads_as_the_same_turns_with_system_and_reasoning(name):
    conv = read(SAME_TALK[name])
    assert [(t.role, t.text) for t in conv.turns] == EXPECTED
    assert [t.reasoning for t in conv.turns] == [None, None, None, None, "think 2"]
    assert conv.system == "Be brief." and conv.is_complete
    assert [(u.text, a.text) for u, a in conv.exchanges()] == [("Q1", "A1"), ("Q2", "A2")]


def test_input_output_records():
    conv = read({"input": "Translate 'chat'.", "output": "Cat."})
    assert conv.turns == [Turn("user", "Translate 'chat'."), Turn("assistant", "Cat.")]
    assert not read({"input": "Translate 'chat'."}).has_response


@pytest.mark.parametrize(
    "turns, complete",
    [
        # a trailing unanswered user turn is not complete
        (["Q1", "A1", "Q2"], ["Q1", "A1"]),
        # an empty answer ends the complete part, and what follows it is not trained on
        (["Q1", "A1", "Q2", " ", "Q3", "A3"], ["Q1", "A1"]),
        (["Q1", ""], []),
        (["", "A1"], []),
        (["Q1", "A1", "Q2", "A2"], ["Q1", "A1", "Q2", "A2"]),
    ],
)
def test_complete_exchanges(turns, complete):
    roles = ["user", "assistant"] * 3
    conv = Conversation([Turn(r, t) for r, t in zip(roles, turns, strict=False)])
    assert [t.text for t in conv.complete().turns] == complete
    assert conv.is_complete == (turns == complete)
    assert conv.has_response == bool(complete)


def test_a_user_turn_after_a_user_turn_breaks_the_exchange():
    conv = read({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})
    assert conv.complete().turns == [] and not conv.has_response


@pytest.mark.parametrize(
    "record, message",
    [
        ({"conversations": [{"from": "robot", "value": "x"}]}, "conversations: bad turn 0"),
        ({"messages": [{"role": "user", "content": None}]}, "messages: turn 0 without text"),
        ({"conversation": "Q1"}, "'conversation' is not a list"),
        ({"instruction": "Q1", "response": 4}, "field 'response' is not a string"),
    ],
)
def test_malformed_records_name_the_field(record, message):
    with pytest.raises(ConversationError, match=message):
        read(record)
    assert conversation_of(record) == (None, f"no_text: {read_error(record)}")


def read_error(record: dict) -> str:
    try:
        read(record)
    except ConversationError as e:
        return str(e)
    raise AssertionError("no error")


def test_write_back_keeps_each_shape_and_drops_stale_keys():
    record = {
        "id": "x",
        "instruction": "Q1",
        "response": "A1",
        "instruction_2": "stale follow-up",
        "conversations": [
            {"from": "human", "value": "Q1"},
            {"from": "gpt", "value": "A1"},
        ],
    }
    longer = Conversation(
        [Turn("user", "Q1"), Turn("assistant", "A1"), Turn("user", "Q2"), Turn("user", "x")]
    )
    out = write_back(record, longer)  # Q2 has no answer: only the first exchange stays
    assert out["id"] == "x" and "instruction_2" not in out
    assert out["conversations"] == [
        {"from": "human", "value": "Q1"},
        {"from": "gpt", "value": "A1"},
    ]
    assert out["conversation"] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
    ]


# -------------------------------------------------- 1: a dangling user turn in every stage


DANGLING = {
    "id": 7,
    "instruction": "What is the capital of France?",
    "response": "Paris.",
    "instruction_2": "And what is the capital of Italy?",
    "conversation": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And what is the capital of Italy?"},
    ],
    "conversation_stop_reason": "response 2 unfinished",
}


def test_an_older_file_with_a_dangling_turn_is_exported_whole_and_filtered(tmp_path):
    from magpie.sharegpt import concatenate

    src = tmp_path / "old_mt.json"
    src.write_text(json.dumps([DANGLING, {"id": 8, "instruction": "Hi?", "response": "Hello!"}]))
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "exp" / "filter.py"),
            "--input_file",
            str(src),
            "--generation_flags",
            "True",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    kept = jsonl(tmp_path / "old_mt_filtered.jsonl")
    rejected = jsonl(tmp_path / "old_mt_rejected.jsonl")
    assert [r["id"] for r in kept] == [8]
    assert [(r["id"], r["filter_reason"]) for r in rejected] == [(7, "generation_flags")]

    out, msgs = tmp_path / "share.jsonl", tmp_path / "msgs.jsonl"
    result = concatenate([str(src)], out, messages_file=msgs, progress=False)
    first = jsonl(out)[0]
    assert first["conversations"] == [
        {"from": "human", "value": "What is the capital of France?"},
        {"from": "gpt", "value": "Paris."},
    ]
    assert "instruction_2" not in first
    assert result["incomplete turns left out"] == 1
    lines = jsonl(msgs)
    assert [m["role"] for m in lines[0]["messages"]] == ["user", "assistant"]
    assert all(line["messages"][-1]["role"] == "assistant" for line in lines)


def test_tagging_judges_the_complete_part():
    from magpie.tagging.job import _view

    conv, reason = conversation_of(DANGLING)
    assert reason is None
    for mission in ("quality", "sample_quality", "reward", "safety"):
        view, _ = _view(mission, conv)
        assert "capital of Italy" not in view.transcript()
    only_question = conversation_of({"instruction": "Hi?", "response": None})[0]
    assert _view("quality", only_question)[0].first_user == "Hi?"
    assert _view("reward", only_question) == (
        None,
        "no_response: the record has no complete exchange to judge",
    )


# ------------------------------------------------------------ 7: reasoning on every turn


def test_older_files_with_thoughts_only_in_flat_fields_restore_them():
    from magpie.sharegpt import conversations_of

    record = {
        "instruction": "2+2?",
        "response": "4.",
        "reasoning": "Two and two.",
        "conversation": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4."},
            {"role": "user", "content": "And 3+3?"},
            {"role": "assistant", "content": "6.", "reasoning": "Three and three."},
        ],
    }
    answers = [t["value"] for t in conversations_of(record, with_reasoning=True)][1::2]
    assert answers == [
        "<think>\nTwo and two.\n</think>\n\n4.",
        "<think>\nThree and three.\n</think>\n\n6.",
    ]
