"""Tagging with models, loaded through the real loading code: a tiny random tagger under
constrained decoding, a scripted engine without it (lenient parsing and the retry), tiny
guard and reward models saved to folders, resume after SIGKILL, bad input at the CLI,
and the embedded SmolLM2 tagging real records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, chained_llama, tiny_llama, tiny_reward

from magpie.engines import EngineOptions
from magpie.engines.base import Completion
from magpie.engines.hf import HFEngine
from magpie.models import DEFAULT_MODEL
from magpie.records import InputError, read_records, state_path, write_records
from magpie.tagging.guard import GUARD_VERDICT
from magpie.tagging.inputs import conversation_of
from magpie.tagging.job import TagOptions, run, tag_file
from magpie.tagging.llm import LLMTagger
from magpie.tagging.schemas import (
    DIFFICULTY,
    QUALITY,
    SAFETY_CATEGORIES,
    SCORES,
    TASK_CATEGORIES,
)

PY = sys.executable
VALID = {
    "difficulty": DIFFICULTY,
    "input_quality": QUALITY,
    "sample_quality": SCORES,
    "task_category": TASK_CATEGORIES,
}
RECORDS = [
    {"instruction": "What is the capital of France?", "response": "Paris."},
    {"instruction": "Write a haiku about rain.", "response": "Soft rain on the roof..."},
    {"input": "Fix this code: print('a'", "output": "print('a')"},
    {
        "conversations": [
            {"from": "human", "value": "Solve 2x + 3 = 7."},
            {"from": "gpt", "value": "x = 2."},
            {"from": "human", "value": "And 3x = 12?"},
            {"from": "gpt", "value": "x = 4."},
        ]
    },
    {"messages": [{"role": "user", "content": "Plan a trip to Rome in 3 days."}]},
    {"instruction": "", "response": None},  # nothing to tag: kept, with the reason
]


def assert_labels_valid(record: dict) -> None:
    """Every label present is in its vocabulary; a null one has its reason."""
    for field, vocabulary in VALID.items():
        if field in record:
            value = record[field]
            assert value in vocabulary or (value is None and record.get("tag_errors")), record
    for tag in record.get("other_task_category") or []:
        assert tag in TASK_CATEGORIES
    if "llama_guard_2" in record:
        value = record["llama_guard_2"]
        assert value is None or GUARD_VERDICT.match(value), value
        if value and value != "safe":
            assert all(c in SAFETY_CATEGORIES for c in value.split("\n")[1].split(","))


# ----------------------------------------------------- constrained decoding on hf engine


@pytest.fixture(scope="module")
def tiny_engine(smol_tokenizer):
    return HFEngine(
        "tiny", model=tiny_llama(smol_tokenizer), tokenizer=smol_tokenizer, batch_size=3
    )


@pytest.mark.parametrize("mission", ["difficulty", "classification", "safety"])
def test_a_random_model_under_constrained_decoding_gives_only_valid_labels(tiny_engine, mission):
    """The worst tagger there is (random weights) cannot produce an invalid label."""
    import xgrammar  # noqa: F401  (a dependency: a broken install fails, never skips)

    tagger = LLMTagger(tiny_engine, "tiny", max_tokens=600)
    assert tagger.constrained
    items = [(i, conversation_of(r)[0]) for i, r in enumerate(RECORDS[2:4])]
    results = list(tagger.tag(mission, items))
    assert sorted(k for k, _, _ in results) == [0, 1]
    label = {"classification": "task_category", "safety": "llama_guard_2"}.get(mission, mission)
    for _, fields, reason in results:
        assert reason is None, reason
        assert fields[label] is not None, fields  # so assert_labels_valid checks a label
        assert_labels_valid(fields)
        assert fields[f"{'task_category' if mission == 'classification' else mission}_generator"]


def test_the_run_knows_the_tagger_settings_before_loading_and_replicas_must_agree(
    tiny_engine, tmp_path
):
    """The journal fingerprint is made before any model loads (on a Ray driver, far from
    the replicas): `constrained` from the engine's name. A tagger that disagrees (a worker
    without xgrammar) makes no entry."""
    from magpie.tagging.job import TagJob, _settings

    tagger = LLMTagger(tiny_engine, DEFAULT_MODEL)
    opts = TagOptions(engine_options=EngineOptions(engine="hf"))
    assert _settings("tagger", opts) == tagger.settings()
    src = tmp_path / "x.json"
    write_records(src, RECORDS[:2])
    other = {**tagger.settings(), "constrained": not tagger.constrained}
    job = TagJob("difficulty", src, tmp_path / "x_difficulty.json", other, DEFAULT_MODEL)
    with pytest.raises(InputError, match="the tagger loaded here has settings"):
        job.run(tagger)


class ScriptedEngine:
    """An engine without constrained decoding that answers from a script."""

    name = "scripted"
    supports_json_schema = False

    def __init__(self, tokenizer, answers: list[str]):
        self.tokenizer = tokenizer
        self.answers = answers
        self.prompts: list[str] = []

    def stream(self, prompts, params, seeds=None):
        for i, p in enumerate(prompts):
            self.prompts.append(p)
            text = self.answers.pop(0)
            yield i, [Completion(text=text, finish_reason="stop", completion_tokens=5)]


def test_without_constrained_decoding_parse_leniently_retry_once_never_store_bad_labels(
    smol_tokenizer,
):
    conv = conversation_of(RECORDS[0])[0]
    items = [(0, conv), (1, conv), (2, conv)]
    engine = ScriptedEngine(
        smol_tokenizer,
        [
            '"explanation": "clear", "input_quality": "Good"}',  # prefilled "{" completes it
            "no idea",  # unparseable: retried
            '"explanation": "x", "input_quality": "superb"}',  # invalid label: retried
            '"explanation": "fine", "input_quality": "average"}',  # retry of 1 works
            '"explanation": "x", "input_quality": "great"}',  # retry of 2 fails again
        ],
    )
    tagger = LLMTagger(engine, "scripted")
    got = {k: (fields, reason) for k, fields, reason in tagger.tag("quality", items)}
    assert all(p.endswith("{") for p in engine.prompts)  # the original's prefill
    # An engine without next-token probabilities: the generated label, no confidence.
    assert got[0] == (
        {
            "input_quality": "good",
            "input_quality_confidence": None,
            "input_quality_score": None,
            "quality_explanation": "clear",
            "quality_generator": "scripted",
        },
        None,
    )
    assert got[1][0]["input_quality"] == "average" and got[1][1] is None
    assert got[2][0] == {"quality_generator": "scripted"}
    assert got[2][1].startswith("invalid_label: input_quality 'great'")
    assert len(engine.prompts) == 5  # one retry each for the two failures, no more


# ----------------------------------------------------------------- guard and reward models

GUARD_TEMPLATE = (
    "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}{% endfor %}"
    "{% set who = 'Agent' if messages[-1]['role'] == 'assistant' else 'User' %}"
    "[INST] Task: check the last {{ who }} message against the policy.\n"
    "<BEGIN UNSAFE CONTENT CATEGORIES>\nS1: Violent Crimes.\nS2: Non-Violent Crimes.\n"
    "<END UNSAFE CONTENT CATEGORIES>\n<BEGIN CONVERSATION>\n"
    "{% for m in messages %}{{ 'User' if m['role'] == 'user' else 'Agent' }}: "
    "{{ m['content'] }}\n\n{% endfor %}<END CONVERSATION>\n"
    "First line 'safe' or 'unsafe'; if unsafe, a second line listing the categories. [/INST]"
)


def save_guard(path: Path, tokenizer, answer: str | None) -> Path:
    """A tiny Llama with a Llama-Guard-style template. With `answer`, its weights are set
    so that greedy decoding after the prompt says exactly `answer` and stops: each layer
    adds nothing to the residual, so the next token depends on the current one only."""
    model = tiny_llama(tokenizer)
    tok = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tok.chat_template = GUARD_TEMPLATE
    if answer is not None:
        prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
        chain = [tok(prompt, add_special_tokens=False).input_ids[-1]]
        chain += tok(answer, add_special_tokens=False).input_ids + [tok.eos_token_id]
        model = chained_llama(tokenizer, chain)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_guard_model_through_its_own_chat_template(tmp_path, smol_tokenizer):
    guard = save_guard(tmp_path / "guard", smol_tokenizer, "unsafe\nS2")
    src = tmp_path / "x.json"
    write_records(src, RECORDS)
    (out,) = run(
        "safety",
        src,
        TagOptions(guard_model_path=str(guard), engine_options=EngineOptions(engine="hf")),
    )
    assert out.name == "x_safety.json"
    records = read_records(out)
    for r in records[:5]:  # multi-turn and instruction-only records reach the guard too
        assert r["llama_guard_2"] == "unsafe\nS2" and r["safety_generator"] == str(guard)
    assert records[5]["llama_guard_2"] is None
    assert records[5]["tag_errors"]["safety"].startswith("no_text")


def test_random_guard_output_is_never_stored_unless_in_llama_guard_form(tmp_path, smol_tokenizer):
    guard = save_guard(tmp_path / "guard", smol_tokenizer, None)
    src = tmp_path / "x.jsonl"
    write_records(src, RECORDS[:3])
    (out,) = run(
        "safety",
        src,
        TagOptions(guard_model_path=str(guard), engine_options=EngineOptions(engine="hf")),
    )
    records = read_records(out)
    assert len(records) == 3
    # A random guard's output is not in Llama Guard form: it is dropped, with the reason.
    assert any(r["llama_guard_2"] is None for r in records), records
    for r in records:
        assert_labels_valid(r)
        if r["llama_guard_2"] is None:
            assert r["tag_errors"]["safety"].startswith("guard_output")


def test_reward_model_scores_in_length_sorted_batches_like_one_at_a_time(tmp_path, smol_tokenizer):
    from transformers import AutoModelForSequenceClassification

    from magpie.tagging.reward import RewardScorer

    path = tiny_reward(tmp_path / "rm", smol_tokenizer)
    long_answer = "word " * 400  # over the model's 256 positions: truncated, still scored
    src = tmp_path / "x.json"
    write_records(src, [*RECORDS, {"instruction": "Long?", "response": long_answer}])
    scorer = RewardScorer(str(path), batch_size=4, dtype="float32")
    widths = []
    model = scorer.model
    scorer.model = lambda **kw: widths.append(kw["input_ids"].shape) or model(**kw)
    summary = tag_file("reward", scorer, src, tmp_path / "x_reward.json")
    # 5 records with a response in batches of at most 4, longest first: two passes.
    assert len(widths) == 2 and widths[0][0] == 4 and widths[0][1] >= widths[1][1]
    assert summary.tagged == 5 and summary.flags == {"no_response": 1, "no_text": 1}
    assert scorer.truncated == 1
    alone_model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    records = read_records(tmp_path / "x_reward.json")
    # the 5 scored records are in the file: the comparison below runs on each of them
    assert sum(isinstance(r["instruct_reward"], float) for r in records) == 5
    for record in records:
        conv, reason = conversation_of(record)
        if reason or not conv.has_response:
            assert record["instruct_reward"] is None and record["tag_errors"]["reward"]
            continue
        assert record["reward_model"] == str(path)
        ids = torch.tensor([scorer.encode(conv)])
        assert ids.shape[1] <= 256
        with torch.no_grad():
            alone = alone_model(input_ids=ids).logits[0, 0].item()
        assert record["instruct_reward"] == pytest.approx(alone, abs=1e-4)


def test_reward_mission_loads_the_model_by_path(tmp_path, smol_tokenizer):
    path = tiny_reward(tmp_path / "rm", smol_tokenizer)
    src = tmp_path / "x.jsonl"
    write_records(src, RECORDS[:2])
    (out,) = run("reward", src, TagOptions(reward_model_path=str(path), save_as="jsonl"))
    assert out.name == "x_reward.jsonl"
    from magpie.tagging.reward import RewardScorer, reward_settings

    # known before the weights load, as the loaded scorer reports it
    assert reward_settings(str(path), 4096) == RewardScorer(str(path)).settings()
    records = read_records(out)
    assert len(records) == 2
    assert all(isinstance(r["instruct_reward"], float) for r in records)


def test_reward_models_that_cannot_be_single_logit_are_refused_before_loading(
    tmp_path, smol_tokenizer, tiny_model_dir
):
    from magpie.tagging.reward import check_reward_model

    with pytest.raises(InputError, match="has 3 labels"):
        check_reward_model(str(tiny_reward(tmp_path / "rm3", smol_tokenizer, num_labels=3)))
    with pytest.raises(InputError, match="not a sequence-classification model"):
        check_reward_model(str(tiny_model_dir))
    custom = tiny_reward(tmp_path / "custom", smol_tokenizer)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_rm.RM"}
    (custom / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="--trust_remote_code"):
        check_reward_model(str(custom))


# -------------------------------------------------------------------------------- resume


def journal_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_classification_resumes_after_sigkill_nothing_lost_or_doubled(tmp_path, tiny_model_dir):
    import xgrammar  # noqa: F401  (a dependency of the package: a broken install fails)

    # Enough records that the run is still going when 10 are journaled: it is killed.
    n = 200
    records = [{"id": i, "instruction": f"Question number {i}?"} for i in range(n)]
    src = tmp_path / "x.json"
    write_records(src, records)
    out = tmp_path / "x_category.json"
    journal = state_path(out, ".journal.jsonl")
    args = [
        PY,
        str(REPO / "exp" / "unitag.py"),
        "--input_file",
        str(src),
        "--tag_mission",
        "classification",
        "--model_path",
        str(tiny_model_dir),
        "--engine",
        "hf",
        "--batch_size",
        "4",
        "--max_tokens",
        "60",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while journal_lines(journal) < 10 and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.02)
    killed = proc.poll() is None
    assert killed, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and 10 <= journal_lines(journal) < n + 1
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not journal.exists()
    tagged = read_records(out)
    assert [r["id"] for r in tagged] == list(range(n))
    for r in tagged:
        assert_labels_valid(r)
    summary = [line for line in done.stdout.splitlines() if line.startswith("[unitag ")][0]
    assert f"records in {n}, out {n}" in summary and "resumed from journal" in summary


def test_an_interrupted_mission_resumes_and_a_finished_one_is_skipped(tmp_path, tiny_engine):
    import xgrammar  # noqa: F401  (a dependency: a broken install fails, never skips)

    src = tmp_path / "x.json"
    write_records(src, RECORDS)
    out = tmp_path / "x_safety.json"
    tagger = LLMTagger(tiny_engine, "tiny", max_tokens=60)
    real_tag = tagger.tag

    def dies_after_two(mission, items):
        for n, result in enumerate(real_tag(mission, items)):
            if n == 2:
                raise KeyboardInterrupt
            yield result

    tagger.tag = dies_after_two
    with pytest.raises(KeyboardInterrupt):
        tag_file("safety", tagger, src, out)
    journal = state_path(out, ".journal.jsonl")
    with open(journal, "a") as f:
        f.write('{"key": 4, "rec')  # a line cut short by the kill
    tagger.tag = real_tag
    summary = tag_file("safety", tagger, src, out)
    assert summary.resumed == 3  # two tagged + the record without text
    assert summary.records_out == 6 and summary.tagged == 5 and summary.flags == {"no_text": 1}
    assert "tagged 5, failed 1" in summary.line()
    assert [r.get("instruction") for r in read_records(out)] == [
        r.get("instruction") for r in RECORDS
    ]


# ------------------------------------------------------------------------------ bad input


def unitag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, str(REPO / "exp" / "unitag.py"), *args], capture_output=True, text=True, timeout=120
    )


def test_bad_input_gets_one_line_and_exit_2_before_any_model_loads(tmp_path):
    src = tmp_path / "x.json"
    write_records(src, RECORDS[:1])
    cases = [
        (["--input_file", str(tmp_path / "missing.json")], "missing.json: file not found"),
        (["--input_file", str(src), "--tag_mission", "tone"], "unknown tag mission 'tone'"),
        (["--input_file", str(src), "--tag_mission", "reward"], "needs --reward_model_path"),
        (
            [
                "--input_file",
                str(src),
                "--tag_mission",
                "safety",
                "--guard_model_path",
                "/no/guard",
            ],
            "cannot load its tokenizer",
        ),
        (["--input_file", str(src), "--save_as", "csv"], "--save_as must be json or jsonl"),
    ]
    for args, message in cases:
        done = unitag(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


# ------------------------------------------------------------- the embedded model, for real


@pytest.mark.slow
def test_embedded_model_tags_real_records_with_only_valid_labels(tmp_path, embedded_dir):
    """SmolLM2-135M with constrained decoding and labels read from probabilities: 100% of
    stored labels valid, every format read (bench/bench_tagging.py runs every mission on
    32 records)."""
    import xgrammar  # noqa: F401  (a dependency: a broken install fails, never skips)

    questions = [
        "What is the boiling point of water at sea level?",
        "Write a Python function that reverses a string.",
        "Give me three name ideas for a bakery.",
        "Rewrite this sentence to be more formal: gonna be late, sorry.",
        "If all cats are animals and Tom is a cat, is Tom an animal?",
        "Plan a one-week study schedule for a chemistry exam.",
        "Pretend you are a pirate and greet me.",
        "Compute 17 * 23.",
        "What should I do if I feel stressed at work?",
        "Summarize the causes of World War I.",
        "Write a short poem about the sea.",
        "Analyse this data: 3, 5, 7, 9. What is the trend?",
        "asdf qwer zxcv",
        "How do I fix a KeyError in Python dictionaries?",
        "Quelle est la capitale de l'Italie ?",
        "Explain photosynthesis to a child.",
    ]
    records = [{"instruction": q, "response": "I am happy to help with that."} for q in questions]
    records += [
        {"input": "Translate 'cat' to Spanish.", "output": "gato"},
        {"messages": [{"role": "user", "content": "Tell me a joke."}]},
        {"conversations": FORMATS_MT},
        {"instruction": "", "response": None},
    ]
    src = tmp_path / "x.json"
    write_records(src, records)
    opts = TagOptions(seed=0, engine_options=EngineOptions(engine="hf", batch_size=20))
    (out,) = run("quality", src, opts)
    final = read_records(out)
    assert len(final) == 20
    for r in final:
        assert_labels_valid(r)
    failed = [(r, r.get("tag_errors")) for r in final[:19] if r["input_quality"] is None]
    assert not failed  # all but the record without text
    assert all(r["input_quality_confidence"] > 0 for r in final[:19])
    assert {r["quality_generator"] for r in final[:19]} == {DEFAULT_MODEL}
    assert final[-1]["tag_errors"]["quality"].startswith("no_text")


FORMATS_MT = [
    {"from": "human", "value": "What is 2 + 2?"},
    {"from": "gpt", "value": "4."},
    {"from": "human", "value": "And times 3?"},
    {"from": "gpt", "value": "12."},
]
