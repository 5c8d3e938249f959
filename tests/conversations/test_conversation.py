"""One conversation model (magpie.conversation): every input format read the same way,
one rule for a complete exchange, and every stage (gen_mt, gen_conv, tagging, dedup,
filter, concat) reading and writing through it. Generation here is scripted (the engine
answers from a table), so the expected texts are known; no weights are loaded."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from test_conversations import GEMMA2, SMOL

from magpie.conversation import (
    Conversation,
    ConversationError,
    Turn,
    conversation_of,
    read,
    write_back,
)
from magpie.engines.base import Completion
from magpie.profiles import Profile
from magpie.records import InputError, read_records, state_path

REPO = Path(__file__).resolve().parents[2]
GREEDY = {"temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.0}


class Scripted:
    """An engine whose reply to a prompt is looked up by the last known text in it (the
    turn it answers). Unknown prompts fail the test."""

    name = "scripted"
    model_path = "scripted"
    tokenizer = None

    def __init__(self, replies: dict[str, str | tuple[str, str]]):
        self.replies = replies
        self.prompts: list[str] = []

    def stream(self, prompts, params, seeds=None):
        for k, prompt in enumerate(prompts):
            self.prompts.append(prompt)
            found = [key for key in self.replies if key in prompt]
            assert found, f"no scripted reply for {prompt!r}"
            reply = self.replies[max(found, key=prompt.rfind)]
            text, finish = reply if isinstance(reply, tuple) else (reply, "stop")
            yield k, [Completion(text, finish, completion_tokens=3)]


def profile(name: str = "scripted", system: bool = True) -> Profile:
    return Profile(
        name, "", ["<|im_end|>"], [], system_prompt_template="{system_prompt}" if system else None
    )


def gen_mt(tmp_path: Path, records: list[dict], replies: dict, num_turns: int = 2, **kw):
    """Run MultiTurnJob on `records` with a scripted engine; (output records, engine)."""
    from magpie.multiturn import MultiTurnJob

    src = tmp_path / "in.json"
    src.write_text(json.dumps(records))
    out = tmp_path / "in_mt.json"
    job = MultiTurnJob(
        kw.pop("profile", profile()),
        kw.pop("tokenizer", SMOL),
        src,
        out,
        model_name="scripted",
        num_turns=num_turns,
        instruction_params=GREEDY,
        response_params=GREEDY,
        max_tokens=64,
        seed=0,
        **kw,
    )
    engine = Scripted(replies)
    job.run(engine)
    return read_records(out), engine


def contents(messages: list[dict]) -> list[tuple[str, str]]:
    return [(m.get("role", m.get("from")), m.get("content", m.get("value"))) for m in messages]


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

MAX_TOKENS_THEN_EMPTY = {
    "Paris.": "And what is the capital of Italy?",
    "And what is the capital of Italy?": ("Rome is the capital of It", "length"),
    "Red.": "Name another one.",
    "Name another one.": "",
}


def test_gen_mt_keeps_only_complete_exchanges_when_a_reply_fails(tmp_path):
    records = [
        {"id": 0, "instruction": "What is the capital of France?", "response": "Paris."},
        {"id": 1, "instruction": "Name a primary colour.", "response": "Red."},
    ]
    out, _ = gen_mt(tmp_path, records, MAX_TOKENS_THEN_EMPTY)
    assert [r["conversation_stop_reason"] for r in out] == [
        "response 2 unfinished",
        "response 2 empty",
    ]
    assert contents(out[0]["conversation"]) == [
        ("user", "What is the capital of France?"),
        ("assistant", "Paris."),
    ]
    assert contents(out[1]["conversation"]) == [
        ("user", "Name a primary colour."),
        ("assistant", "Red."),
    ]
    for r in out:
        assert "instruction_2" not in r and "response_2" not in r


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


# ------------------------------------------------ 2: extending existing multi-turn records

THIRD_TURNS = {
    "Flat answer two.": "Flat question three?",
    "Flat question three?": "Flat answer three.",
    "Share answer two.": "Share question three?",
    "Share question three?": "Share answer three.",
    "Roles answer two.": "Roles question three?",
    "Roles question three?": "Roles answer three.",
    "Single answer.": "Single question two?",
    "Single question two?": "Single answer two.",
    "Single answer two.": "Single question three?",
    "Single question three?": "Single answer three.",
}


def test_gen_mt_extends_existing_turns_in_every_format(tmp_path):
    from magpie.dedup.records import text_of

    def talk(name: str, key: str = "role", text: str = "content") -> list[dict]:
        """Two exchanges of `name` as [{role, content}] (or other keys)."""
        roles = {"user": "human", "assistant": "gpt"} if key == "from" else {}
        return [
            {key: roles.get(role, role), text: f"{name} {kind} {n}{end}"}
            for n in ("one", "two")
            for role, kind, end in (("user", "question", "?"), ("assistant", "answer", "."))
        ]

    flat = {
        "id": 0,
        "instruction": "Flat question one?",
        "response": "Flat answer one.",
        "instruction_2": "Flat question two?",
        "response_2": "Flat answer two.",
        "conversation": talk("Flat"),
    }
    sharegpt = {"id": 1, "conversations": talk("Share", "from", "value")}
    roles = {
        "id": 2,
        "conversations": [{"role": "system", "content": "You are terse."}, *talk("Roles")],
    }
    single = {"id": 3, "instruction": "Single question one?", "response": "Single answer."}
    done = {
        "id": 4,
        "conversation": [
            {"role": "user", "content": "Done one?"},
            {"role": "assistant", "content": "Yes one."},
            {"role": "user", "content": "Done two?"},
            {"role": "assistant", "content": "Yes two."},
            {"role": "user", "content": "Done three?"},
            {"role": "assistant", "content": "Yes three."},
        ],
    }
    out, engine = gen_mt(tmp_path, [flat, sharegpt, roles, single, done], THIRD_TURNS, 3)
    assert [r["conversation_stop_reason"] for r in out] == [None] * 5
    assert not any("Done" in p for p in engine.prompts)  # already 3 turns: not regenerated

    f = out[0]
    assert [f[k] for k in ("instruction_2", "response_2", "instruction_3", "response_3")] == [
        "Flat question two?",
        "Flat answer two.",
        "Flat question three?",
        "Flat answer three.",
    ]
    assert len(f["conversation"]) == 6 and f["conversation"][5]["content"] == "Flat answer three."

    s = out[1]
    assert contents(s["conversations"]) == [
        ("human", "Share question one?"),
        ("gpt", "Share answer one."),
        ("human", "Share question two?"),
        ("gpt", "Share answer two."),
        ("human", "Share question three?"),
        ("gpt", "Share answer three."),
    ]
    assert s["instruction"] == "Share question one?" and s["response_3"] == "Share answer three."
    assert text_of(s) == "Share question one?"  # dedup reads the text, not a blank

    r = out[2]  # {role, content} inside `conversations` keeps that shape and its system turn
    assert contents(r["conversations"])[0] == ("system", "You are terse.")
    assert contents(r["conversations"])[-2:] == [
        ("user", "Roles question three?"),
        ("assistant", "Roles answer three."),
    ]
    assert [m["content"] for m in out[3]["conversation"]] == [
        "Single question one?",
        "Single answer.",
        "Single question two?",
        "Single answer two.",
        "Single question three?",
        "Single answer three.",
    ]
    assert out[4]["conversation"] == done["conversation"]
    assert [out[4][f"instruction_{k}"] for k in (2, 3)] == ["Done two?", "Done three?"]


def test_gen_mt_leaves_records_without_an_exchange_as_they_are(tmp_path):
    records = [{"id": 0, "conversations": [{"from": "human", "value": "Only a question?"}]}]
    out, engine = gen_mt(tmp_path, records, {})
    assert engine.prompts == []
    assert out[0]["conversations"] == records[0]["conversations"]
    assert "instruction" not in out[0] and "conversation" not in out[0]
    assert out[0]["conversation_stop_reason"] == "input has no usable instruction and response"


def test_gen_mt_continues_a_half_journaled_dialogue_from_its_item(tmp_path):
    """A dialogue whose follow-up question is journaled but not its answer goes out as an
    item carrying that turn: the step, pickled without its journal as for a Ray replica,
    asks only for the answer; the other dialogue is grown from its start."""
    import pickle

    from magpie.multiturn import MultiTurnJob

    src, out = tmp_path / "in.json", tmp_path / "in_mt.json"
    src.write_text(
        json.dumps(
            [
                {"id": 0, "instruction": "Q1?", "response": "A1."},
                {"instruction": "Q2?", "response": "A2."},
            ]
        )
    )
    replies = {"A1.": "Asked again?", "A2.": "Second follow-up?", "Second follow-up?": "B2."}
    replies["Journaled follow-up?"] = "Its answer."

    def job():
        return MultiTurnJob(
            profile(),
            SMOL,
            src,
            out,
            model_name="scripted",
            instruction_params=GREEDY,
            response_params=GREEDY,
            seed=0,
        )

    first = job()
    header = json.dumps({"__journal__": first.journal.fingerprint})
    first.journal.close()
    turn = {"role": "user", "content": "Journaled follow-up?", "failure": None, "turn": 2}
    state_path(out, ".journal.jsonl").write_text(
        header + "\n" + json.dumps({"key": "0/0", "record": turn}) + "\n"
    )
    resumed = job()
    assert resumed.todo() == [(0, {0: turn}), (1, {})]
    assert resumed.progress() == (4, 1)
    replica = pickle.loads(pickle.dumps(resumed))
    assert replica.journal is None
    engine = Scripted(replies)
    made = list(replica.make(engine, resumed.todo()))
    assert [key for key, _, _ in made] == ["1/0", "0/1", "1/1"]
    assert [entry["content"] for _, entry, _ in made] == ["Second follow-up?", "Its answer.", "B2."]
    assert {entry["engine"] for _, entry, _ in made} == {"scripted"}

    resumed.run(Scripted(replies))
    records = read_records(out)
    assert [(r["instruction_2"], r["response_2"]) for r in records] == [
        ("Journaled follow-up?", "Its answer."),
        ("Second follow-up?", "B2."),
    ]
    assert all(r["gen_mt_configs"]["engine"] == "scripted" for r in records)


def test_gen_mt_refuses_a_malformed_record_before_generating(tmp_path):
    from magpie.multiturn import MultiTurnJob

    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"instruction": "Q", "response": "A"}) + "\n")
    src.write_text(src.read_text() + json.dumps({"conversations": [{"from": "x", "value": "Q"}]}))
    with pytest.raises(InputError, match=r"bad\.jsonl:2: conversations: bad turn 0"):
        MultiTurnJob(
            profile(),
            SMOL,
            src,
            tmp_path / "o.json",
            model_name="m",
            instruction_params=GREEDY,
            response_params=GREEDY,
        )


# ------------------------------------------------------------ 3: templates without system


def test_gemma_multi_turn_drops_the_system_prompt_before_loading(tmp_path, caplog):
    replies = {"Paris.": "And Italy?", "And Italy?": "Rome."}
    record = {"id": 0, "instruction": "Capital of France?", "response": "Paris."}
    with caplog.at_level(logging.INFO, logger="magpie"):
        out, engine = gen_mt(
            tmp_path, [record], replies, tokenizer=GEMMA2, profile=profile("gemma", False)
        )
    assert "no system turn" in caplog.text
    assert engine.prompts[0] == (
        "<bos><start_of_turn>user\nCapital of France?<end_of_turn>\n"
        "<start_of_turn>model\nParis.<end_of_turn>\n<start_of_turn>user\n"
    )
    assert contents(out[0]["conversation"])[2:] == [("user", "And Italy?"), ("assistant", "Rome.")]
    assert out[0]["gen_mt_configs"]["system_prompt"] == ""


def test_gemma_one_pass_conversations_decided_before_loading(tmp_path, caplog):
    from magpie.multiturn import ConversationJob
    from magpie.turns import parse_system_prompts

    def job(**kw):
        return ConversationJob(
            profile("gemma", False),
            GEMMA2,
            tmp_path / "c.json",
            model_name="gemma",
            total=1,
            n_turns=2,
            instruction_params=GREEDY,
            response_params=GREEDY,
            **kw,
        )

    with caplog.at_level(logging.INFO, logger="magpie"):
        assert job().default_system is None
    assert "no system turn" in caplog.text
    with pytest.raises(InputError, match="has no system turn"):
        job(system_prompts=parse_system_prompts("You are a pirate."))


# ------------------------------------------------------------ 7: reasoning on every turn


def test_reasoning_of_every_turn_survives_gen_mt_and_export(tmp_path):
    from magpie.filters import apply_filters, load_filter_config
    from magpie.sharegpt import concatenate

    record = {"id": 0, "instruction": "2+2?", "response": "4.", "reasoning": "Two and two."}
    replies = {"4.": "And 3+3?", "And 3+3?": "<think>Three and three.</think>6."}
    out, _ = gen_mt(tmp_path, [record], replies)
    conv = out[0]["conversation"]
    assert [m.get("reasoning") for m in conv] == [None, "Two and two.", None, "Three and three."]
    assert out[0]["reasoning"] == "Two and two." and out[0]["reasoning_2"] == "Three and three."

    kept, _, _ = apply_filters(out, load_filter_config())
    assert kept == out
    share = tmp_path / "s.jsonl"
    concatenate([str(tmp_path / "in_mt.json")], share, progress=False)
    again = tmp_path / "again.jsonl"  # the ShareGPT file still carries every turn's thoughts
    concatenate([str(share)], again, with_reasoning=True, progress=False)
    answers = [t["value"] for t in jsonl(again)[0]["conversations"] if t["from"] == "gpt"]
    assert answers == [
        "<think>\nTwo and two.\n</think>\n\n4.",
        "<think>\nThree and three.\n</think>\n\n6.",
    ]


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


# ------------------------------------------------------- one JSON type per output column


def test_outputs_load_with_datasets(tmp_path):
    import datasets

    from magpie.sharegpt import concatenate

    records = [
        {"id": 0, "instruction": "What is the capital of France?", "response": "Paris."},
        {"id": 1, "instruction": "Name a primary colour.", "response": "Red."},
        {"id": 2, "instruction": "2+2?", "response": "4.", "reasoning": "Two and two."},
    ]
    replies = {**MAX_TOKENS_THEN_EMPTY, "4.": "And 3+3?", "And 3+3?": "<think>Hm.</think>6."}
    out, _ = gen_mt(tmp_path, records, replies)
    share, msgs = tmp_path / "s.jsonl", tmp_path / "m.jsonl"
    concatenate([str(tmp_path / "in_mt.json")], share, messages_file=msgs, progress=False)
    cache = tmp_path / "cache"
    mt = datasets.load_dataset(
        "json", data_files=str(tmp_path / "in_mt.json"), split="train", cache_dir=str(cache)
    )
    assert mt["id"] == [0, 1, 2] and mt["response_2"] == [None, None, "6."]
    assert mt["conversation"][2][3] == {"role": "assistant", "content": "6.", "reasoning": "Hm."}
    sg = datasets.load_dataset("json", data_files=str(share), split="train", cache_dir=str(cache))
    assert sg["conversation_id"] == ["magpie_0", "magpie_1", "magpie_2"]
    assert [len(c) for c in sg["conversations"]] == [2, 2, 4]
    ms = datasets.load_dataset("json", data_files=str(msgs), split="train", cache_dir=str(cache))
    assert [m[-1]["content"] for m in ms["messages"]] == ["Paris.", "Red.", "6."]


def test_mixed_id_types_are_refused(tmp_path):
    from magpie.dedup import run_distance
    from magpie.multiturn import ConversationJob

    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"id": 0, "instruction": "a"}\n{"id": "1", "instruction": "b"}\n')
    with pytest.raises(InputError, match=r"mixed\.jsonl:2: id '1' is a string but earlier"):
        run_distance(mixed, tmp_path / "d.jsonl", progress=False)
    with pytest.raises(InputError, match="ids are number and string"):
        ConversationJob(
            profile(),
            SMOL,
            tmp_path / "c.json",
            model_name="m",
            input_file=mixed,
            instruction_params=GREEDY,
            response_params=GREEDY,
        )
