"""Preference data: N responses per instruction, reward scores, chosen/rejected pairs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, tiny_reward

from magpie.engines.base import Completion
from magpie.preference import build_pairs, choose_pair, make_pairs, split_pairs
from magpie.records import InputError, read_records, state_path
from magpie.stages.gen_po_rewards import GenPoRewards
from magpie.stages.gen_res import GenPoMultiRes


@pytest.fixture(scope="session")
def tiny_reward_dir(tmp_path_factory, smol_tokenizer) -> Path:
    """A tiny random single-logit LlamaForSequenceClassification saved as a folder."""
    return tiny_reward(tmp_path_factory.mktemp("tiny-rm"), smol_tokenizer, positions=1024)


def scored(scores, responses=None, **extra) -> dict:
    responses = responses or [f"answer {j}" for j in range(len(scores))]
    return {
        "uuid": "u",
        "instruction": "Name a colour.",
        "responses": responses,
        "rewards_armorm": [{"score": s} for s in scores],
        **extra,
    }


# ---------------------------------------------------------------------------------------
# Pairs from crafted scores


@pytest.mark.parametrize(
    "scores, min_margin, expected",
    [
        ([0.1, 0.5, 0.3], 0.0, (1, 0)),
        ([0.2, 0.2, 0.2], 0.0, "tie"),
        ([0.2, 0.2, 0.2], 0.5, "tie"),
        ([0.10, 0.11, 0.105], 0.05, "below_margin"),
        ([0.10, 0.16, 0.105], 0.05, (1, 0)),
        ([0.25, 0.5], 0.25, (1, 0)),  # a margin equal to the minimum is kept
        ([0.7], 0.0, "too_few_responses"),
        ([], 0.0, "too_few_responses"),
        ([None, 0.3, None], 0.0, "too_few_responses"),
        ([0.9, 0.1, 0.9, 0.1], 0.0, (0, 1)),  # the FIRST best and the FIRST worst
        ([None, 0.3, -1.0], 0.0, (1, 2)),
    ],
)
def test_choose_pair(scores, min_margin, expected):
    assert choose_pair(scores, min_margin=min_margin) == expected


def test_flagged_and_empty_responses_are_not_candidates_unless_asked():
    record = scored(
        [0.9, 0.5, 0.1, -3.0],
        responses=["cut off mid-sen", "Blue.", "Red, I think.", "   "],
        response_flags=["unfinished", None, None, "empty"],
    )
    pairs, dropped = make_pairs([record])
    assert not dropped
    (pair,) = pairs
    assert pair["chosen"] == [{"role": "assistant", "content": "Blue."}]
    assert pair["rejected"] == [{"role": "assistant", "content": "Red, I think."}]
    pairs, _ = make_pairs([record], use_flagged=True)
    assert pairs[0]["chosen"][0]["content"] == "cut off mid-sen"
    assert pairs[0]["rejected"][0]["content"] == "Red, I think."  # empty text never counts


def test_pairs_keep_original_columns_and_count_drops(tmp_path):
    records = [
        scored([0.1, 0.4, 0.2], gen_input_configs={"temperature": 1.1}, task_category="Math"),
        scored([0.3, 0.3]),  # tie
        scored([0.30, 0.31]),  # near-tie
        scored([0.5]),  # one response
        {"uuid": "s", "instruction": "", "responses": None, "response_flag": "skipped"},
        {**scored([0.1, 0.2]), "rewards_armorm": None, "rewards_flag": "skipped"},
        scored([-2.0, 1.0, 0.0]),
    ]
    src = tmp_path / "x_5res_armorm.json"
    src.write_text(json.dumps(records))
    result = build_pairs(src, min_margin=0.05, test_size=0.5, seed=3)
    assert result["pairs"] == 2 and result["train"] == 1 and result["test"] == 1
    assert result["dropped"] == {
        "tie": 1,
        "below_margin": 1,
        "too_few_responses": 1,
        "no_responses": 1,
        "not_scored": 1,
    }
    out = Path(result["output_dir"])
    assert out == tmp_path / "x_5res_armorm_dpo"
    pairs = read_records(out / "train.jsonl") + read_records(out / "test.jsonl")
    first = next(p for p in pairs if p.get("task_category") == "Math")
    assert list(first)[:3] == ["prompt", "chosen", "rejected"]
    assert first["prompt"] == [{"role": "user", "content": "Name a colour."}]
    assert first["chosen"] == [{"role": "assistant", "content": "answer 1"}]
    assert first["rejected"] == [{"role": "assistant", "content": "answer 0"}]
    assert (first["chosen_score"], first["rejected_score"]) == (0.4, 0.1)
    # The original's columns are all there.
    for key in ("uuid", "instruction", "responses", "rewards_armorm", "gen_input_configs"):
        assert key in first


def test_identical_responses_never_make_a_pair_and_are_counted(tmp_path, capsys):
    # Issue 13: three identical answers scored 0.1250, 0.1249, 0.1250 became a pair whose
    # chosen and rejected said the same, and the summary said "flagged: none".
    same = scored([0.1250, 0.1249, 0.1250], responses=["Blue.", "Blue.", "Blue."])
    spaced = scored([0.9, 0.2], responses=["Red is  a colour.\n", " Red is a colour."])
    real = scored([0.1250, 0.1249, 0.1250], responses=["Blue.", "Green.", "Blue."])
    src = tmp_path / "x_3res_armorm.json"
    src.write_text(json.dumps([same, spaced, real]))
    result = build_pairs(src, test_size=0)
    assert result["pairs"] == 1
    assert result["dropped"] == {"identical_texts": 2}
    assert "identical_texts 2" in capsys.readouterr().out
    (pair,) = read_records(Path(result["output_dir"]) / "train.jsonl")
    assert pair["chosen"][0]["content"] == "Blue."
    assert pair["rejected"][0]["content"] == "Green."
    # Rejected is the worst answer that differs from the chosen one, not a copy of it.
    texts = ["Blue.", "Red.", "Blue. "]
    assert choose_pair([0.9, 0.5, 0.1], texts=texts) == (0, 1)
    # "a" 0.1 is the chosen answer again: "b" is the only other one, and it ties.
    assert choose_pair([0.9, 0.9, 0.1], texts=["a", "b", " a"]) == "tie"
    assert choose_pair([0.5, 0.5], texts=["a", "b"]) == "tie"
    # One such record alone gives no pair at all: a clear error, exit 2 from the CLI.
    lone = tmp_path / "lone.json"
    lone.write_text(json.dumps([same]))
    with pytest.raises(InputError, match="no record gives a preference pair .*identical_texts 1"):
        build_pairs(lone)


def test_split_is_seeded():
    pairs = [{"i": i} for i in range(100)]
    train, test = split_pairs(pairs, 0.02, seed=42)
    assert len(test) == 2 and len(train) == 98
    assert split_pairs(pairs, 0.02, seed=42) == (train, test)
    assert split_pairs(pairs, 0.02, seed=7) != (train, test)
    assert sorted(p["i"] for p in train + test) == list(range(100))
    assert split_pairs(pairs[:1], 0.02, seed=42) == (pairs[:1], [])  # never all in test
    assert len(split_pairs(pairs, 10, seed=1)[1]) == 10  # a count


def test_no_pair_at_all_is_an_error_and_writes_nothing(tmp_path):
    src = tmp_path / "ties.json"
    src.write_text(json.dumps([scored([0.2, 0.2]), scored([0.5])]))
    with pytest.raises(InputError, match="no record gives a preference pair .*tie 1"):
        build_pairs(src)
    assert not (tmp_path / "ties_dpo").exists()


@pytest.mark.parametrize(
    "record, message",
    [
        (
            {"instruction": "a", "responses": ["x", "y"]},
            r"\.jsonl:2: field 'rewards_armorm' is missing",
        ),
        (scored([0.1, 0.2], responses=["only one"]), "has 2 scores for 1 responses"),
        (
            {**scored([0.1, 0.2]), "rewards_armorm": [{"score": "high"}, {"score": 1}]},
            "non-numeric",
        ),
        ({**scored([0.1]), "responses": "x"}, "'responses' is not a list of strings"),
        ({"instruction": "a"}, "field 'responses' is missing"),
        ({**scored([0.1, 0.2]), "instruction": None}, "field 'instruction'"),
    ],
)
def test_pairs_bad_input_names_file_and_line(tmp_path, record, message):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(scored([0.1, 0.9])) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(InputError, match=message):
        build_pairs(src)
    assert not (tmp_path / "in_dpo").exists()


# ---------------------------------------------------------------------------------------
# N responses per instruction


class CountingEngine:
    """A stand-in engine that records what it was asked for."""

    name = "fake"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls = []

    def stream(self, prompts, params, seeds=None):
        self.calls.append((len(prompts), params.n, seeds))
        for i in range(len(prompts)):
            yield i, [Completion(f"r{i}.{j}", "stop", None, 5, 2) for j in range(params.n)]


def test_one_request_per_prompt_with_n_samples(smol_tokenizer, tmp_path):
    from magpie.engines.base import stage_seed
    from magpie.profiles import get_profile
    from magpie.responses import ResponseJob

    src = tmp_path / "ins.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"q{i}"}) + "\n" for i in range(4)))
    job = ResponseJob(
        get_profile("HuggingFaceTB/SmolLM2-135M-Instruct", smol_tokenizer),
        src,
        model_name="m",
        temperature=0.8,
        seed=9,
        num_samples=5,
    )
    engine = CountingEngine(smol_tokenizer)
    summary = job.run(engine)
    # One pass, n = 5 each; record k's samples seeded stage_seed + 5 k + j.
    base = stage_seed(9, "gen_po_multi_res")
    assert engine.calls == [(4, 5, [base, base + 5, base + 10, base + 15])]
    records = read_records(tmp_path / "ins_5res.json")
    assert [r["responses"] for r in records][1] == [f"r1.{j}" for j in range(5)]
    assert summary.tokens == 4 * 5 * 2 and summary.stage == "gen_po_multi_res"


def test_multi_res_records_skips_and_resumes(tiny_model_dir, tmp_path):
    records = [
        {"uuid": "a", "instruction": "Say hi"},
        {"uuid": "b", "instruction": "", "instruction_flag": "empty"},
        {"uuid": "c", "instruction": "Count to three"},
    ]
    src = tmp_path / "x.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "x_3res.json"
    args = dict(input_file=str(src), model_path=str(tiny_model_dir), num_samples=3)
    GenPoMultiRes(**args, max_tokens=4, seed=5).run()
    first = read_records(out)
    assert [r["uuid"] for r in first] == ["a", "b", "c"]
    a = first[0]
    assert len(a["responses"]) == 3 and all(isinstance(t, str) for t in a["responses"])
    assert a["response_finish_reasons"] == ["length"] * 3
    assert a["response_flags"] == ["unfinished"] * 3 or "empty" in a["response_flags"]
    cfg = a["gen_response_configs"]
    assert cfg["prompt"].endswith("<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n")
    assert (cfg["temperature"], cfg["num_samples"], cfg["seed"], cfg["engine"]) == (0.8, 3, 5, "hf")
    assert cfg["output_generator"] == str(tiny_model_dir) and cfg["max_tokens"] == 4
    assert first[1]["responses"] is None and first[1]["response_flag"] == "skipped"

    # A killed run left record c in the journal, then a torn line: c is not redone.
    out.unlink()
    fingerprint = {
        "stage": "gen_po_multi_res",
        "input": str(src.resolve()),
        "records": 3,
        "model": str(tiny_model_dir),
        "temperature": 0.8,
        "top_p": 1.0,
        "repetition_penalty": 1.0,
        "max_tokens": 4,
        "seed": 5,
        "num_samples": 3,
    }
    kept = {**first[2], "responses": ["FROM", "THE", "JOURNAL"]}
    state_path(out, ".journal.jsonl").write_text(
        json.dumps({"__journal__": fingerprint})
        + "\n"
        + json.dumps({"key": 2, "record": kept})
        + "\n"
        + '{"key": 0, "rec'
    )
    GenPoMultiRes(**args, max_tokens=4, seed=5).run()
    second = read_records(out)
    assert second[2]["responses"] == ["FROM", "THE", "JOURNAL"]
    assert [r["uuid"] for r in second] == ["a", "b", "c"] and len(second[0]["responses"]) == 3
    assert not state_path(out, ".journal.jsonl").exists()


def test_multi_res_bad_input(tiny_model_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"instruction": "ok"}\n{"instruction": 7}\n')
    with pytest.raises(InputError, match=r"in\.jsonl:2: field 'instruction' is not a string"):
        GenPoMultiRes(input_file=str(src), model_path=str(tiny_model_dir)).run()
    with pytest.raises(InputError, match="num_samples must be at least 1"):
        GenPoMultiRes(input_file=str(src), num_samples=0).run()


# ---------------------------------------------------------------------------------------
# Rewards


def multi_res_records() -> list[dict]:
    return [
        {"uuid": "a", "instruction": "Say hi", "responses": ["Hi!", "Hello there.", ""]},
        {"uuid": "b", "instruction": "", "responses": None, "response_flag": "skipped"},
        {"uuid": "c", "instruction": "Count to three", "responses": ["1 2 3", "one, two, three"]},
    ]


def test_rewards_scores_every_response_and_resumes(tiny_reward_dir, tmp_path):
    src = tmp_path / "x_3res.json"
    src.write_text(json.dumps(multi_res_records()))
    out = tmp_path / "x_3res_armorm.json"
    args = dict(
        input_file=str(src), reward_model_path=str(tiny_reward_dir), dtype="float32", batch_size=2
    )
    GenPoRewards(**args).run()
    first = read_records(out)
    assert [r["uuid"] for r in first] == ["a", "b", "c"]
    for r in (first[0], first[2]):
        assert len(r["rewards"]) == len(r["responses"])
        assert all(isinstance(s["score"], float) for s in r["rewards"])
        assert r["rewards_model"] == str(tiny_reward_dir)
    assert first[1]["rewards"] is None and first[1]["rewards_flag"] == "skipped"
    # Batched, length-sorted scores equal one-at-a-time scores.
    args1 = {**args, "batch_size": 1, "output_file": str(tmp_path / "one.json")}
    GenPoRewards(**args1).run()
    single = read_records(tmp_path / "one.json")
    for r, s in zip(first, single, strict=True):
        for x, y in zip(r["rewards"] or [], s["rewards"] or [], strict=True):
            assert x["score"] == pytest.approx(y["score"], abs=1e-4)

    out.unlink()
    fingerprint = {
        "stage": "gen_po_rewards",
        "input": str(src.resolve()),
        "records": 3,
        "reward_model": str(tiny_reward_dir),
        "max_length": 4096,
        "dtype": "float32",
    }
    kept = {**first[0], "rewards": [{"score": 1.0}, {"score": 2.0}, {"score": 3.0}]}
    state_path(out, ".journal.jsonl").write_text(
        json.dumps({"__journal__": fingerprint})
        + "\n"
        + json.dumps({"key": 0, "record": kept})
        + "\n"
        + '{"key": 2, "record": {"uu'
    )
    GenPoRewards(**args).run()
    second = read_records(out)
    assert second[0]["rewards"] == kept["rewards"]
    scores = [x["score"] for x in second[2]["rewards"]]
    assert scores == pytest.approx([x["score"] for x in first[2]["rewards"]], abs=1e-4)
    assert not state_path(out, ".journal.jsonl").exists()


def test_rewards_refuses_what_is_not_a_single_logit_reward_model(tmp_path):
    from transformers import LlamaConfig

    src = tmp_path / "x.json"
    src.write_text(json.dumps(multi_res_records()))
    two = tmp_path / "two-labels"
    LlamaConfig(num_labels=2, architectures=["LlamaForSequenceClassification"]).save_pretrained(two)
    with pytest.raises(InputError, match="2 labels"):
        GenPoRewards(input_file=str(src), reward_model_path=str(two)).run()
    custom = tmp_path / "custom"
    config = LlamaConfig(architectures=["MyRewardModel"])
    config.auto_map = {"AutoModelForSequenceClassification": "modeling.MyRewardModel"}
    config.save_pretrained(custom)
    with pytest.raises(InputError, match="--trust_remote_code"):
        GenPoRewards(input_file=str(src), reward_model_path=str(custom)).run()
    assert not (tmp_path / "x_armorm.json").exists()


def test_rewards_bad_input(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"instruction": "a", "responses": ["x"]}\n{"instruction": "b", "responses": [1]}\n'
    )
    with pytest.raises(
        InputError, match=r"in\.jsonl:2: field 'responses' is not a list of strings"
    ):
        GenPoRewards(input_file=str(src), reward_model_path="unused").run()


# ---------------------------------------------------------------------------------------
# The driver script


def test_example_script_runs_from_any_directory(tiny_model_dir, tiny_reward_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    src = data / "example_instructions.jsonl"
    lines = (REPO / "data_po" / "example_instructions.jsonl").read_text().splitlines()[:3]
    src.write_text("\n".join(lines) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        **os.environ,
        "REWARD_MODEL_PATH": str(tiny_reward_dir),
        "RES_EXTRA_ARGS": "--max_tokens 4",
        "REWARD_EXTRA_ARGS": "--dtype float32",
        "PAIRS_EXTRA_ARGS": "--use_flagged",
        "OMP_NUM_THREADS": "1",  # three processes on a shared machine: no spinning threads
    }
    r = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "magpie_example_po.sh"),
            str(tiny_model_dir),
            str(src),
            "2",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(read_records(data / "example_instructions_2res.json")[0]["responses"]) == 2
    scored_records = read_records(data / "example_instructions_2res_armorm.json")
    assert all(len(x["rewards"]) == 2 for x in scored_records)
    assert (data / "example_instructions_2res_armorm_dpo" / "train.jsonl").exists()
    logs = list(data.glob("*_PO.log"))
    assert len(logs) == 1 and "[gen_po_pairs]" in logs[0].read_text()
    assert not list(elsewhere.iterdir())  # nothing written where it ran
