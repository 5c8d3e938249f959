"""The preference stages stream: pairs from a generated file equal pairs built by hand,
rewards are scored from (index, record) items; neither reads its input whole."""

from __future__ import annotations

import json
import math
import pickle
import random

import pytest

import magpie.records
from magpie.preference import RewardJob, build_pairs


@pytest.fixture
def no_whole_reads(monkeypatch):
    """read_records (the whole file in memory) fails: stages must use iter_records."""

    def refuse(*a, **k):
        raise AssertionError("the stage must stream its input, not read it whole")

    monkeypatch.setattr(magpie.records, "read_records", refuse)
    return refuse


def _scored_records(n: int = 300, seed: int = 0) -> list[dict]:
    """Records whose best and worst responses are known: distinct scores and texts, some
    skipped by sampling, some tied."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = 2 + i % 3
        record = {"uuid": f"u{i}", "instruction": f"Question {i}?", "task_category": "Math"}
        if i % 17 == 0:
            out.append({**record, "responses": None, "rewards_armorm": None})
            continue
        scores = rng.sample(range(-50, 50), k)
        if i % 23 == 0:
            scores = [7] * k  # a tie
        record["responses"] = [f"answer {i}.{j} ü" for j in range(k)]
        record["rewards_armorm"] = [{"score": s / 10} for s in scores]
        out.append(record)
    return out


def _expected_pairs(records: list[dict]) -> tuple[list[dict], int]:
    """chosen = the highest score, rejected = the lowest (all distinct here), the
    prompt/chosen/rejected/scores first, then the record's own columns."""
    pairs, dropped = [], 0
    for r in records:
        if r["responses"] is None:
            dropped += 1
            continue
        scores = [s["score"] for s in r["rewards_armorm"]]
        if len(set(scores)) == 1:
            dropped += 1
            continue
        best, worst = scores.index(max(scores)), scores.index(min(scores))
        pairs.append(
            {
                "prompt": [{"role": "user", "content": r["instruction"]}],
                "chosen": [{"role": "assistant", "content": r["responses"][best]}],
                "rejected": [{"role": "assistant", "content": r["responses"][worst]}],
                "chosen_score": scores[best],
                "rejected_score": scores[worst],
                **r,
            }
        )
    return pairs, dropped


def test_pairs_from_a_json_file_equal_pairs_built_by_hand(tmp_path, no_whole_reads, capsys):
    records = _scored_records()
    src = tmp_path / "x_3res_armorm.json"
    src.write_text(json.dumps(records, indent=2))
    result = build_pairs(src, test_size=0.1, seed=5)
    pairs, dropped = _expected_pairs(records)
    # The documented split: a seeded shuffle of the pairs, the first ceil(10%) are test.
    order = list(range(len(pairs)))
    random.Random(5).shuffle(order)
    n_test = math.ceil(0.1 * len(pairs))
    train = [pairs[i] for i in order[n_test:]]
    test = [pairs[i] for i in order[:n_test]]
    out = tmp_path / "x_3res_armorm_dpo"
    assert result["output_dir"] == str(out)
    lines = {
        name: [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        for name in ("train", "test")
    }
    assert lines["train"] == train and lines["test"] == test
    assert (result["records"], result["pairs"]) == (300, len(pairs))
    assert (result["train"], result["test"]) == (len(train), len(test))
    assert sum(result["dropped"].values()) == dropped
    assert f"train {len(train)}, test {len(test)}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [out.name, src.name]
    )  # no spill left


def _responses_of(conversation) -> str:
    return conversation.texts("assistant")[0]


class _LengthScorer:
    """A stand-in reward model: the score of a response is its length."""

    model_path = "length-scorer"

    def fit(self, conversation):
        return list(range(len(_responses_of(conversation)))), False

    def scores(self, encoded):
        for k, ids in enumerate(encoded):
            yield k, float(len(ids))


def test_rewards_step_carries_its_records_and_streams_the_output(tmp_path, no_whole_reads):
    records = [
        {"uuid": f"u{i}", "instruction": f"Q{i}", "responses": ["a" * (i % 5), "bb"]}
        for i in range(50)
    ]
    records[7] = {"uuid": "u7", "instruction": "", "responses": None}
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.json"
    job = RewardJob(src, out, reward_model="length-scorer")
    assert job.progress() == (50, 0)
    assert not hasattr(job, "records")
    assert len(pickle.dumps(job)) < 2000  # what goes to Ray replicas: no records
    items = iter(job.todo())
    assert next(items) == (0, records[0])  # (index, record), read as asked for
    summary = job.run(_LengthScorer())
    assert summary.records_out == 50 and summary.flags == {"skipped": 1}
    want = []
    for r in records:
        if r["responses"] is None:
            fields = {"rewards": None, "rewards_model": None, "rewards_flag": "skipped"}
        else:
            scores = [{"score": float(len(t))} for t in r["responses"]]
            fields = {
                "rewards": scores,
                "rewards_model": "length-scorer",
                "rewards_truncated": False,
            }
        want.append({**r, **fields})
    got = json.loads(out.read_text())
    assert got == want
    assert out.read_text() == json.dumps(want, indent=2) + "\n"  # the .json layout
