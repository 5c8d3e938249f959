"""The gen_mt and gen_conv stages (magpie/multiturn.py: MultiTurnJob extends records by
turns, ConversationJob writes conversations in one pass): on a scripted engine (replies
looked up by the turn they answer), a tiny random model and the embedded SmolLM2; what
they write, resume, refuse and export. The record model they read and write is tested in
test_conversation.py, the turn prompts in test_conversations.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from test_conversation import jsonl
from test_conversations import GEMMA2, SMOL

from magpie.engines.base import Completion
from magpie.profiles import Profile
from magpie.records import InputError, read_records, state_path
from magpie.turns import MULTI_TURN_SYSTEM_PROMPT, parse_system_prompts

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
    items = list(resumed.todo())  # (index, input record, journaled turns)
    assert [(i, turns) for i, _, turns in items] == [(0, {0: turn}), (1, {})]
    assert [record.get("id") for _, record, _ in items] == [0, None]
    assert resumed.progress() == (4, 1)
    replica = pickle.loads(pickle.dumps(resumed))
    assert replica.journal is None
    engine = Scripted(replies)
    made = list(replica.make(engine, items))
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


# ------------------------------------------------------- one JSON type per output column


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


# ------------------------------------------------------------------ real conversations


@pytest.fixture(scope="module")
def smol_engine(embedded_dir):
    from magpie.engines.hf import HFEngine
    from magpie.models import DEFAULT_MODEL

    return HFEngine(DEFAULT_MODEL, batch_size=16, seed=0)


def smol_profile(engine):
    from magpie.models import DEFAULT_MODEL
    from magpie.profiles import get_profile

    return get_profile(DEFAULT_MODEL, engine.tokenizer)


LEAKS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
SAMPLING = {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1}
FINISHING = {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.0, "frequency_penalty": 0.3}


def test_real_three_turn_extension(smol_engine, tmp_path):
    from magpie.multiturn import MultiTurnJob

    src = tmp_path / "x_ins_res.json"
    seeds = [
        ("What is the capital of France?", "The capital of France is Paris."),
        ("Give me a tip for learning to cook.", "Start with simple recipes and practise."),
        ("How do plants make food?", "Plants make food by photosynthesis, using sunlight."),
        ("What is 2 + 2?", "2 + 2 = 4."),
        ("", None),
    ]
    src.write_text(
        json.dumps([{"id": i, "instruction": q, "response": a} for i, (q, a) in enumerate(seeds)])
    )
    job = MultiTurnJob(
        smol_profile(smol_engine),
        smol_engine.tokenizer,
        src,
        tmp_path / "x_ins_res_mt.json",
        model_name="smol",
        num_turns=3,
        instruction_params=SAMPLING,
        response_params=SAMPLING,
        max_tokens=200,
        seed=5,
    )
    summary = job.run(smol_engine)
    out = read_records(tmp_path / "x_ins_res_mt.json")
    assert summary.records_out == 5 and [r["id"] for r in out] == list(range(5))
    assert out[4]["conversation_stop_reason"].startswith("input has no usable")
    complete = [r for r in out if r["conversation_stop_reason"] is None]
    assert complete, [r["conversation_stop_reason"] for r in out]
    for r in out[:4]:
        conv = r["conversation"]
        assert [m["role"] for m in conv] == ["user", "assistant"] * (len(conv) // 2)
        assert conv[0]["content"] == r["instruction"]
        for m in conv:
            assert m["content"] and not any(t in m["content"] for t in LEAKS)
        if r["conversation_stop_reason"] is None:
            assert len(conv) == 6
            assert r["instruction_3"] == conv[4]["content"]
            assert r["response_3"] == conv[5]["content"]
        else:  # the turn that failed is named, and only complete turns are kept
            assert r["conversation_stop_reason"].split()[-1] in ("empty", "unfinished")
            assert "instruction_3" not in r or "response_2" in r


def test_one_pass_columns_and_steering(smol_engine, tmp_path):
    from magpie.multiturn import ConversationJob
    from magpie.turns import parse_system_prompts as parse

    profile = smol_profile(smol_engine)

    def run(name, **kw):
        settings = {"response_params": SAMPLING, "max_tokens": 200, "seed": 11, **kw}
        job = ConversationJob(
            profile,
            smol_engine.tokenizer,
            tmp_path / f"{name}.json",
            model_name="smol",
            instruction_params=SAMPLING,
            **settings,
        )
        job.run(smol_engine)
        return read_records(tmp_path / f"{name}.json")

    only = run("only", total=3, only_instruction=True, n_turns=3)
    assert all(
        set(r) >= {"instruction", "model_name"} and "response" not in r and "conversation" not in r
        for r in only
    )

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"topic": "a"}\n{"topic": "b", "system_prompt": "You are a pirate."}\n')
    single = run(
        "single",
        input_file=rows,
        include_system_prompt=True,
        system_prompts=parse({"teacher": "You are a teacher.", "chef": "You are a chef."}),
    )
    assert single[1]["system_prompt"] == "You are a pirate."  # the row's own wins
    assert single[1]["system_prompt_key"] is None
    assert single[0]["system_prompt_key"] in ("teacher", "chef")
    assert single[0]["topic"] == "a"  # input columns are kept
    for r in single:
        assert "instruction" in r and "response" in r and r["model_name"] == "smol"

    # The response stages' setting for the embedded model (frequency penalty 0.3, room
    # to finish): seeded, so the same conversations finish on every run.
    ended = run(
        "ended",
        total=3,
        n_turns=2,
        end_with_user=True,
        include_system_prompt=True,
        response_params=FINISHING,
        max_tokens=400,
    )
    finished = [r for r in ended if r["conversation_stop_reason"] is None]
    assert finished, [r["conversation_stop_reason"] for r in ended]  # the check below runs
    for r in ended:
        conv = r["conversation"]
        assert conv[0] == {"role": "system", "content": MULTI_TURN_SYSTEM_PROMPT}
    for r in finished:  # two turns, the last one the user's: it ends on the user turn
        conv = r["conversation"]
        assert [m["role"] for m in conv[1:]] == ["user", "assistant", "user"]
        assert all(m["content"].strip() for m in conv[1:])


def test_seeded_choices_and_sampling_reproduce(smol_engine, tmp_path):
    from magpie.multiturn import ConversationJob

    spec = parse_system_prompts(["You are a poet.", "You are a lawyer.", "You are a nurse."])
    outs = []
    for k in range(2):
        job = ConversationJob(
            smol_profile(smol_engine),
            smol_engine.tokenizer,
            tmp_path / f"r{k}.json",
            model_name="smol",
            total=4,
            only_instruction=True,
            include_system_prompt=True,
            system_prompts=spec,
            instruction_params=SAMPLING,
            response_params=SAMPLING,
            max_tokens=48,
            seed=99,
        )
        job.run(smol_engine)
        outs.append(
            [(r["system_prompt"], r["instruction"]) for r in read_records(tmp_path / f"r{k}.json")]
        )
    assert outs[0] == outs[1]


def test_resume_uses_journaled_turns(tiny_model_dir, tmp_path):
    """A journal left by a kill (with a torn last line) is replayed, not regenerated."""
    from magpie.engines.hf import HFEngine
    from magpie.multiturn import MultiTurnJob
    from magpie.profiles import get_profile

    engine = HFEngine(str(tiny_model_dir), batch_size=4, seed=0)
    profile = get_profile(str(tiny_model_dir), engine.tokenizer)
    src = tmp_path / "x.json"
    src.write_text(
        json.dumps(
            [{"instruction": "Q1", "response": "A1"}, {"instruction": "Q2", "response": "A2"}]
        )
    )
    out = tmp_path / "x_mt.json"

    def job():
        return MultiTurnJob(
            profile,
            engine.tokenizer,
            src,
            out,
            model_name="tiny",
            num_turns=2,
            instruction_params={"temperature": 1.0, "top_p": 1.0, "repetition_penalty": 1.0},
            response_params={"temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.0},
            max_tokens=4,
            seed=1,
        )

    first = job()
    header = json.dumps({"__journal__": first.journal.fingerprint})
    first.journal.close()
    lines = [
        header,
        json.dumps(
            {
                "key": "0/0",
                "record": {"role": "user", "content": "FOLLOW-UP", "failure": None, "turn": 2},
            }
        ),
        json.dumps(
            {
                "key": "0/1",
                "record": {"role": "assistant", "content": "REPLY", "failure": None, "turn": 2},
            }
        ),
    ]
    state_path(out, ".journal.jsonl").write_text("\n".join(lines) + '\n{"key": "1/0", "rec')
    job().run(engine)
    records = read_records(out)
    assert records[0]["instruction_2"] == "FOLLOW-UP" and records[0]["response_2"] == "REPLY"
    assert records[0]["conversation_stop_reason"] is None
    # Record 1 was generated now: a random model never closes its turn in 4 tokens.
    assert records[1]["conversation_stop_reason"] == "instruction 2 unfinished"
    assert [m["content"] for m in records[1]["conversation"]] == ["Q2", "A2"]


@pytest.mark.parametrize("processor", [None, "de_markdown"])
def test_one_pass_user_turns_take_the_first_token_processor(smol_tokenizer, tmp_path, processor):
    """A model biased to open every turn with '#' (and then to end it): --logits_processor
    stops that in user turns (the instructions) and leaves assistant turns alone."""
    import torch
    from conftest import tiny_llama

    from magpie.engines.hf import HFEngine
    from magpie.logits import first_token_processor
    from magpie.multiturn import ConversationJob
    from magpie.profiles import get_profile

    assert first_token_processor(logits_processor=True) == "de_markdown"
    with pytest.raises(InputError, match="cannot be used together"):
        first_token_processor(True, True)
    model = tiny_llama(smol_tokenizer)
    hash_id = smol_tokenizer.convert_tokens_to_ids("#")
    end_id = smol_tokenizer.convert_tokens_to_ids("<|im_end|>")

    fed = {"width": 0}  # tokens fed by the current forward pass: a prefill feeds many

    def feeding(module, args, kwargs):
        fed["width"] = kwargs["input_ids"].shape[1]

    def bias(module, inputs, out):  # a prefill picks the first token
        favourite = hash_id if fed["width"] > 1 else end_id
        return out.index_add(-1, torch.tensor([favourite]), torch.full((*out.shape[:-1], 1), 100.0))

    model.register_forward_pre_hook(feeding, with_kwargs=True)
    model.lm_head.register_forward_hook(bias)
    engine = HFEngine("tiny", model=model, tokenizer=smol_tokenizer, batch_size=4)
    greedy = {"temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.0}
    job = ConversationJob(
        get_profile("tiny", smol_tokenizer),
        smol_tokenizer,
        tmp_path / "conv.json",
        model_name="tiny",
        total=2,
        n_turns=1,
        early_stopping=False,
        instruction_params={**greedy, "logits_processor": processor},
        response_params=greedy,
        max_tokens=3,
    )
    job.run(engine)
    records = read_records(tmp_path / "conv.json")
    assert len(records) == 2  # the checks below run on both conversations
    for r in records:
        assert r["gen_input_configs"]["instruction"]["logits_processor"] == processor
        assert r["conversation_stop_reason"] is None
        assert r["instruction"].startswith("#") == (processor is None)
        assert r["response"] == "#"
