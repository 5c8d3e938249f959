"""concat and filter stream (issue 25): their files equal what a plain in-memory
reference makes of the same records, and they never hold the input's records."""

from __future__ import annotations

import json
import random
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

import magpie.filters
import magpie.records
import magpie.sharegpt
from magpie.filters import check, load_filter_config, response_length, run_filter
from magpie.labels import TASK_CATEGORIES
from magpie.sharegpt import canonical_label, concatenate, to_sharegpt

CATEGORIES = [*TASK_CATEGORIES[:5], None, "not a category"]


def generated(n: int, seed: int = 0) -> list[dict]:
    """Records with mixed categories, many equal response lengths, some failing a rule."""
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "conversation_id": f"m_{i}",
            "instruction": f"Question {i}?",
            "response": "word " * rng.randint(1, 30) + "é",
            "response_flag": None if rng.random() > 0.1 else "unfinished",
            "input_quality": rng.choice(["good", "excellent", "poor"]),
            "task_category": rng.choice(CATEGORIES),
            "instruct_reward": round(rng.uniform(-12, 5), 3),
        }
        for i in range(n)
    ]


def write(path: Path, records: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    return path


def jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def reference_filter(records: list[dict], cfg) -> tuple[list[dict], list[dict]]:
    """The filter as it was written for records in memory (before issue 25): rules,
    then the per-category cap, top-K and shuffle on lists. Every field a rule reads is in
    the records, so no rule is left unapplied."""
    kept, rejected = [], []
    for record in records:
        fails = check(record, cfg)
        if fails:
            rejected.append(record | {"filter_reason": fails[0], "filter_failed": fails})
        else:
            kept.append(record)
    if cfg.max_per_category is not None:
        groups: dict = {}
        for i, r in enumerate(kept):
            label = canonical_label(r.get("task_category"), TASK_CATEGORIES)
            groups.setdefault(label, []).append(i)
        rng = random.Random(cfg.seed)
        chosen = set()
        for label in sorted(groups, key=lambda g: (g is None, g or "")):
            members = groups[label]
            cap = cfg.max_per_category
            chosen.update(members if len(members) <= cap else rng.sample(members, cap))
        over = [r for i, r in enumerate(kept) if i not in chosen]
        kept = [r for i, r in enumerate(kept) if i in chosen]
        reason = {"filter_reason": "max_per_category", "filter_failed": ["max_per_category"]}
        rejected += [r | reason for r in over]
    if cfg.top_k is not None:
        order = sorted(range(len(kept)), key=lambda i: -response_length(kept[i]))
        cut = sorted(order[cfg.top_k :])
        rejected += [kept[i] | {"filter_reason": "top_k", "filter_failed": ["top_k"]} for i in cut]
        kept = [kept[i] for i in order[: cfg.top_k]]
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(kept)
    return kept, rejected


CAPPED = {"max_per_category": 40, "top_k": 150, "shuffle": True, "seed": 3}


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize(
    "settings",
    [
        CAPPED,
        {**CAPPED, "input_quality": ["good", "excellent"], "min_instruct_reward": -10},
        {"max_per_category": 30, "seed": 8},
        {"top_k": 100},
        {"shuffle": True, "seed": 1},
        {"top_k": 10000},
        {},
    ],
)
def test_filter_writes_what_the_in_memory_reference_keeps(tmp_path, suffix, settings):
    records = generated(400)
    src = write(tmp_path / f"in{suffix}", records)
    cfg = load_filter_config(None, **settings)
    report = run_filter(src, cfg, tmp_path / "kept.jsonl", tmp_path / "rejected.jsonl")
    kept, rejected = reference_filter(json.loads(json.dumps(records)), cfg)
    assert (tmp_path / "kept.jsonl").read_bytes() == jsonl_bytes(kept)
    assert (tmp_path / "rejected.jsonl").read_bytes() == jsonl_bytes(rejected)
    assert report.records_in == 400 and report.kept == len(kept)
    assert report.rejected == Counter(r["filter_reason"] for r in rejected)


def test_filter_writes_json_outputs_as_json_dump_does(tmp_path):
    records = generated(300, seed=4)
    src = write(tmp_path / "in.jsonl", records)
    cfg = load_filter_config(None, **CAPPED)
    run_filter(src, cfg, tmp_path / "kept.json", tmp_path / "rejected.json")
    kept, rejected = reference_filter(records, cfg)
    for name, records in (("kept", kept), ("rejected", rejected)):
        text = (tmp_path / f"{name}.json").read_text(encoding="utf-8")
        assert text == json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.jsonl",
        "kept.json",
        "rejected.json",
    ]  # the spool left nothing behind


def test_concat_of_shards_equals_the_record_by_record_reference(tmp_path):
    shards = []
    for k, suffix in enumerate([".json", ".jsonl", ".json", ".jsonl"]):
        records = generated(50 + 20 * k, seed=k)
        records[0]["difficulty"] = "Very Hard"  # canonical label
        records[1]["input_quality"] = "great"  # invalid label, kept aside
        shards.append(write(tmp_path / f"shard{k}{suffix}", records))
    expected, counts = [], Counter()
    n = 7
    for shard in shards:
        text = shard.read_text(encoding="utf-8")
        rows = json.loads(text) if shard.suffix == ".json" else map(json.loads, text.splitlines())
        for record in rows:
            expected.append(to_sharegpt(record, f"p_{n}", True, counts))
            n += 1
    out = tmp_path / "out.jsonl"
    result = concatenate([str(s) for s in shards], out, "p", start_id=7, progress=False)
    assert out.read_bytes() == jsonl_bytes(expected)
    assert result == {"output": str(out), "records": len(expected), "shards": 4, **counts}
    assert counts["invalid input_quality"] == 4


def test_an_empty_jsonl_shard_is_refused_as_before(tmp_path):
    (tmp_path / "a.jsonl").write_text("")
    with pytest.raises(magpie.records.InputError, match=r"a\.jsonl: file is empty"):
        concatenate([str(tmp_path / "a.jsonl")], tmp_path / "o.jsonl", progress=False)


def _no_whole_reads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("read whole")

    for module in (magpie.records, magpie.filters, magpie.sharegpt):
        monkeypatch.setattr(module, "read_records", refuse, raising=False)


def _peak(run) -> int:
    """Bytes allocated at the peak while `run()` runs (beyond what was held before)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_concat_and_filter_hold_a_bounded_number_of_records(tmp_path, monkeypatch, suffix):
    """20,000 records: held in memory they take many megabytes; concat and filter (with
    every cap and a shuffle: the reordering path) peak far below that."""
    src = write(tmp_path / f"in{suffix}", generated(20_000, seed=9))
    held = _peak(lambda: magpie.records.read_records(src))
    _no_whole_reads(monkeypatch)
    cfg = load_filter_config(None, **{**CAPPED, "top_k": 5000})
    warm = write(tmp_path / f"warm{suffix}", generated(100))  # imports, caches: once
    run_filter(warm, cfg, tmp_path / "k.jsonl", tmp_path / "r.jsonl")
    concatenate([str(warm)], tmp_path / "c.jsonl", progress=False)
    filtering = _peak(lambda: run_filter(src, cfg, tmp_path / "k.jsonl", tmp_path / "r.jsonl"))
    joining = _peak(lambda: concatenate([str(src)], tmp_path / "c.jsonl", progress=False))
    assert held > 20_000 * 500  # the test measures something
    assert filtering < held / 5, (filtering, held)
    assert joining < held / 10, (joining, held)
