"""The generation stages stream (issue 25): gen_res reads its input record by record (never
whole), hands the executor (index, record) items, and writes its output from the journal
in order; the records it makes do not depend on how the work is chunked, and a run killed
with SIGKILL and rerun writes what an uninterrupted run writes.

The engine here is a stub (`StubEngine`, with `StubTokenizer`): no model, only the
bookkeeping. Its answer to a prompt is "A<seed>:<prompt>", so the expected records are
written out by hand below from the records' indices alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import magpie.executor
import magpie.records
import magpie.responses
from magpie.engines.base import Completion, stage_seed
from magpie.profiles import Profile
from magpie.records import state_path
from magpie.responses import ResponseJob

REPO = Path(__file__).resolve().parents[2]
SEED = 7
STOP = ["<|end|>"]


class StubTokenizer:
    """Just enough of a tokenizer for chat_prompt: a visible one-line-per-turn template and
    no special tokens."""

    chat_template = "stub"
    all_special_tokens: list[str] = []
    added_tokens_decoder: dict = {}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **kw):
        turns = "".join(f"[{m['role']}]{m['content']}\n" for m in messages)
        return turns + ("[assistant]" if add_generation_prompt else "")


class StubEngine:
    """A stub engine for the bookkeeping: answers "A<seed>:<prompt, newlines as spaces>".
    With `block_after`, it hangs (for a kill) after that many answers."""

    name = "stub"

    def __init__(self, block_after: int | None = None):
        self.tokenizer = StubTokenizer()
        self.block_after = block_after
        self.answered = 0

    def stream(self, prompts, params, seeds=None):
        for k, prompt in enumerate(prompts):
            if self.answered == self.block_after:
                time.sleep(3600)
            self.answered += 1
            text = f"A{seeds[k]}:" + prompt.replace("\n", " ")
            yield k, [Completion(text, "stop", "<|end|>", 3, 2)]


def input_record(i: int) -> dict:
    """Record i of the inputs: mostly instructions, with flagged instructions, conversations
    ending on a user turn, and conversations already answered mixed in."""
    if i % 10 == 3:
        return {"id": i, "instruction": "", "instruction_flag": "empty"}
    if i % 10 == 5:
        return {
            "id": i,
            "conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "a"}],
        }
    if i % 10 == 7:
        return {"id": i, "conversations": [{"from": "human", "value": f"q{i}"}]}
    return {"id": i, "instruction": f"q{i}"}


def expected_record(i: int) -> dict:
    """What gen_res writes for input record i (by hand, from the module docstring's rules)."""
    record = input_record(i)
    if i % 10 == 3:
        return {**record, "response": None, "response_flag": "skipped"}
    if i % 10 == 5:
        return record
    prompt = f"[user]q{i}\n[assistant]"
    answer = f"A{stage_seed(SEED, 'gen_res') + i}:[user]q{i} [assistant]"
    configs = {
        "prompt": prompt,
        "temperature": 0.0,
        "top_p": 1.0,
        "repetition_penalty": 1.0,
        "max_tokens": 64,
        "stop_tokens": STOP,
        "output_generator": "stub",
        "enable_thinking": None,
        "engine": "stub",
        "response_mode": "template",
    }
    done = {"response_finish_reason": "stop", "response_flag": None}
    if i % 10 == 7:  # the answer as the next turn, in every shape (conversation.write_back)
        return {
            **record,
            "conversations": [*record["conversations"], {"from": "gpt", "value": answer}],
            **done,
            "instruction": f"q{i}",
            "response": answer,
            "conversation": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": answer},
            ],
            "gen_response_configs": configs,
        }
    return {
        **record,
        "response": answer,
        "reasoning": None,
        **done,
        "gen_response_configs": configs,
    }


def write_input(path: Path, n: int) -> None:
    """A .json array of n records, written with the stdlib."""
    path.write_text(json.dumps([input_record(i) for i in range(n)], indent=2))


def job(src: Path) -> ResponseJob:
    profile = Profile("stub", "", STOP, [])
    return ResponseJob(profile, src, model_name="stub", max_tokens=64, seed=SEED)


@pytest.fixture
def never_whole(monkeypatch):
    """Any read of a whole input fails the test."""

    def whole(path):
        raise AssertionError(f"{path} read whole")

    monkeypatch.setattr(magpie.records, "read_records", whole)
    monkeypatch.setattr(magpie.responses, "read_records", whole, raising=False)


@pytest.mark.parametrize("chunk", [7, 4096])
def test_gen_res_streams_its_input_and_writes_the_records_in_order(
    tmp_path, monkeypatch, never_whole, chunk
):
    n = 3000
    monkeypatch.setattr(magpie.executor, "LOCAL_CHUNK", chunk)
    src = tmp_path / "in.json"
    write_input(src, n)
    summary = job(src).run(StubEngine())
    out = json.loads((tmp_path / "in_res.json").read_text())
    assert len(out) == n
    assert out == [expected_record(i) for i in range(n)]
    assert summary.records_in == summary.records_out == n
    assert summary.flags["skipped"] == n // 10
    assert summary.flags["already answered (left as it was)"] == n // 10
    assert not state_path(tmp_path / "in_res.json", ".journal.jsonl").exists()


def test_gen_res_bad_record_deep_in_a_json_array_is_named_before_any_output(tmp_path):
    """The streaming validation names the record, as the whole-file reading did."""
    records = [input_record(i) for i in range(2000)]
    records[1500] = {"id": 1500, "question": "no user turn"}
    src = tmp_path / "in.json"
    src.write_text(json.dumps(records))
    with pytest.raises(magpie.records.InputError, match=r"in\.json: record 1500: no user turn"):
        job(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json"]


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_gen_res_killed_on_a_large_input_resumes_to_the_uninterrupted_output(tmp_path):
    """20k records: a run SIGKILLed once 5000 entries are journaled (wherever it is then;
    it hangs at its 5001st answer at the latest), then rerun, writes the records an
    uninterrupted run writes (by hand: `expected_record`), the journaled ones not made
    again."""
    n, killed_at = 20_000, 5000
    src = tmp_path / "in.json"
    write_input(src, n)
    out = tmp_path / "in_res.json"
    journal = state_path(out, ".journal.jsonl")
    script = (
        "import sys; from pathlib import Path; "
        f"sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(REPO)!r}]; "
        "import test_streaming_generation as t; "
        f"t.job(Path({str(src)!r})).run(t.StubEngine(block_after={killed_at}))"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    try:
        deadline = time.time() + 300
        while lines(journal) < 1 + killed_at and time.time() < deadline:
            assert proc.poll() is None, "the run ended before it was killed"
            time.sleep(0.2)
        assert lines(journal) > killed_at
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    # Whole lines only (the kill may cut the last one short): the header, then entries.
    entries = [json.loads(x) for x in journal.read_bytes().split(b"\n")[1:-1]]
    answered = sum(e["record"].get("gen_response_configs") is not None for e in entries)

    engine = StubEngine()
    summary = job(src).run(engine)
    assert summary.resumed == len(entries)
    assert engine.answered == 8 * n // 10 - answered
    records = json.loads(out.read_text())
    assert records == [expected_record(i) for i in range(n)]


class StubInstructionEngine:
    """A stub engine for gen_ins's bookkeeping: sample j of a prompt seeded s answers
    "I<s + j>", or nothing when s + j is a multiple of 7."""

    name = "stub"
    tokenizer = None

    def stream(self, prompts, params, seeds=None):
        for k in range(len(prompts)):
            texts = [f"I{seeds[k] + j}" if (seeds[k] + j) % 7 else "" for j in range(params.n)]
            yield k, [Completion(t, "stop", "\n", 3, 2) for t in texts]


@pytest.mark.parametrize("chunk", [3, 4096])
def test_gen_ins_writes_every_round_in_order_whatever_the_chunking(tmp_path, monkeypatch, chunk):
    """5003 records in rounds of 50 (a short last round): record i is sample i of the
    stage's seeds (by hand: stage_seed + i), flags counted as the output is written."""
    from magpie.instructions import InstructionJob

    total, n = 5003, 50
    monkeypatch.setattr(magpie.executor, "LOCAL_CHUNK", chunk)
    out = tmp_path / "ins.json"
    job = InstructionJob(
        Profile("stub", "<pre>", STOP, []),
        out,
        model_name="stub",
        total_prompts=total,
        n=n,
        shuffle=False,
        seed=SEED,
    )
    summary = job.run(StubInstructionEngine())
    records = json.loads(out.read_text())
    base = stage_seed(SEED, "gen_ins")
    texts = [f"I{base + i}" if (base + i) % 7 else "" for i in range(total)]
    assert [r["id"] for r in records] == list(range(total))
    assert [r["instruction"] for r in records] == texts
    assert [r["instruction_flag"] for r in records] == [None if t else "empty" for t in texts]
    assert summary.flags == {"empty": texts.count("")} and summary.records_out == total


# ---------------------------------------------------------------- gen_mt and gen_conv
SAMPLING = {"temperature": 1.0, "top_p": 1.0, "repetition_penalty": 1.0}


class StubTurnEngine:
    """A stub engine for the conversation stages' bookkeeping: a turn seeded s is "T<s>".
    With `fail_after`, it raises (a crash) after that many turns."""

    name = "stub"
    tokenizer = None

    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after
        self.made = 0

    def stream(self, prompts, params, seeds=None):
        for k in range(len(prompts)):
            if self.made == self.fail_after:
                raise RuntimeError("crash")
            self.made += 1
            yield k, [Completion(f"T{seeds[k]}", "stop", "\n", 3, 2)]


def turn(stage: str, step: int, i: int) -> str:
    """The text of conversation i's turn at `step` (by hand: the seed of item i)."""
    return f"T{stage_seed(SEED, f'{stage}/{step}') + i}"


def mt_input(i: int) -> dict:
    if i % 10 == 4:  # a flagged instruction: nothing to continue, left as it came
        return {"id": i, "instruction": "", "instruction_flag": "empty", "response": None}
    return {"id": i, "instruction": f"q{i}", "response": f"a{i}"}


def mt_expected(i: int) -> dict:
    record = mt_input(i)
    configs = {
        "num_turns": 2,
        "system_prompt": "S",
        "instruction": SAMPLING,
        "response": SAMPLING,
        "max_tokens": 64,
        "mt_generator": "stub",
        "engine": "stub",
    }
    if i % 10 == 4:
        stop = "input has no usable instruction and response"
        return {**record, "conversation_stop_reason": stop, "gen_mt_configs": configs}
    follow_up, answer = turn("gen_mt", 0, i), turn("gen_mt", 1, i)
    return {
        **record,
        "instruction_2": follow_up,
        "response_2": answer,
        "conversation": [
            {"role": "user", "content": f"q{i}"},
            {"role": "assistant", "content": f"a{i}"},
            {"role": "user", "content": follow_up},
            {"role": "assistant", "content": answer},
        ],
        "conversation_stop_reason": None,
        "gen_mt_configs": configs,
    }


def mt_job(src: Path, out: Path):
    from magpie.multiturn import MultiTurnJob

    return MultiTurnJob(
        Profile("stub", "", STOP, []),
        StubTokenizer(),
        src,
        out,
        model_name="stub",
        system_prompt="S",
        instruction_params=SAMPLING,
        response_params=SAMPLING,
        max_tokens=64,
        seed=SEED,
    )


@pytest.fixture
def conversations_never_whole(monkeypatch, never_whole):
    import magpie.multiturn

    def whole(path):
        raise AssertionError(f"{path} read whole")

    monkeypatch.setattr(magpie.multiturn, "read_records", whole, raising=False)


@pytest.mark.parametrize("chunk", [7, 4096])
def test_gen_mt_streams_and_resumes_after_a_crash(
    tmp_path, monkeypatch, conversations_never_whole, chunk
):
    """2000 dialogues grown by a follow-up and its answer, streamed from a .json input in
    chunks; a run that crashes after 1500 turns, rerun, writes every record as an
    uninterrupted run would (by hand: `mt_expected`), journaled turns not made again."""
    n = 2000
    monkeypatch.setattr(magpie.executor, "LOCAL_CHUNK", chunk)
    src, out = tmp_path / "in.json", tmp_path / "in_mt.json"
    src.write_text(json.dumps([mt_input(i) for i in range(n)]))
    with pytest.raises(RuntimeError, match="crash"):
        mt_job(src, out).run(StubTurnEngine(fail_after=1500))
    engine = StubTurnEngine()
    summary = mt_job(src, out).run(engine)
    assert engine.made == 2 * (n - n // 10) - 1500
    assert json.loads(out.read_text()) == [mt_expected(i) for i in range(n)]
    assert summary.records_in == summary.records_out == n
    assert summary.flags == {"input has no usable instruction and response": n // 10}


def test_gen_conv_streams_rows_and_draws_system_prompts_in_row_order(
    tmp_path, monkeypatch, conversations_never_whole
):
    """1500 rows of a .json input, some with their own system prompt, the rest drawn from
    a weighted mapping in row order from the run seed (by hand with random.Random)."""
    import random

    from magpie.multiturn import ConversationJob
    from magpie.turns import parse_system_prompts

    n = 1500
    monkeypatch.setattr(magpie.executor, "LOCAL_CHUNK", 100)
    rows = [
        {"topic": f"t{i}", **({"system_prompt": "own"} if i % 7 == 0 else {})} for i in range(n)
    ]
    src, out = tmp_path / "rows.json", tmp_path / "conv.json"
    src.write_text(json.dumps(rows))
    job = ConversationJob(
        Profile("stub", "<pre>", STOP, [], system_prompt_template="{system_prompt}"),
        StubTokenizer(),
        out,
        model_name="stub",
        input_file=src,
        include_system_prompt=True,
        system_prompts=parse_system_prompts({"a": "A", "b": ["B", 3]}),
        instruction_params=SAMPLING,
        response_params=SAMPLING,
        max_tokens=64,
        seed=SEED,
    )
    summary = job.run(StubTurnEngine())
    rng = random.Random(SEED)
    expected = []
    for i, row in enumerate(rows):
        key = rng.choices(["a", "b"], weights=[0.25, 0.75])[0]
        key, system = (None, "own") if "system_prompt" in row else (key, key.upper())
        expected.append(
            {
                "id": i,
                **row,
                "instruction": turn("gen_conv", 0, i),
                "response": turn("gen_conv", 1, i),
                "system_prompt": system,
                "system_prompt_key": key,
                "model_name": "stub",
                "conversation_stop_reason": None,
                "gen_input_configs": {
                    "n_turns": 1,
                    "end_with_user": False,
                    "instruction": SAMPLING,
                    "response": SAMPLING,
                    "max_tokens": 64,
                    "input_generator": "stub",
                    "seed": SEED,
                    "engine": "stub",
                },
            }
        )
    assert json.loads(out.read_text()) == expected
    assert summary.records_in == summary.records_out == n
