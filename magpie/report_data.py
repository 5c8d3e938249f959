"""What the report page shows, computed in one streaming pass over the records.

Counts and distributions use every record; the records the page lets a person browse are
a uniform reservoir sample of a fixed size, so a file of a million records costs the
page what a file of a few thousand does. Only numbers (one float per record and numeric
field) and the sample are held, never the records.
"""

from __future__ import annotations

import json
import os
import random
from array import array
from collections import Counter
from collections.abc import Iterable
from math import isfinite
from pathlib import Path

import numpy as np
from tqdm import tqdm

from magpie.conversation import ConversationError, read
from magpie.dedup import default_threshold
from magpie.funnel import funnel
from magpie.labels import DIFFICULTY, INPUT_QUALITY, TASK_CATEGORIES
from magpie.records import LIST_FIELDS, STATE_DIR, InputError, iter_records, meta_settings
from magpie.sharegpt import canonical_label

NULL = "(none)"  # a null or missing tag: shown as its own bar, never dropped
KEPT = "kept"  # filter_reason of a record the filter kept
DEFAULT_SAMPLE = 5000
TOP_LANGUAGES = 15

# Label fields: (title, vocabulary in display order, or None: the values found, commonest first).
LABELS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "task_category": ("Task category", TASK_CATEGORIES),
    "difficulty": ("Difficulty", DIFFICULTY),
    "input_quality": ("Input quality", INPUT_QUALITY),
    "sample_quality": ("Sample quality (judge score)", ("1", "2", "3", "4", "5")),
    "language": ("Language", None),
    "llama_guard_2": ("Llama Guard 2", None),
    "filter_reason": ("Filter: kept or first rule failed", None),
}
# Numeric fields: (title, x-axis unit, a threshold line or None).
NUMBERS: dict[str, tuple[str, str, float | None]] = {
    "instruction_length": ("Instruction length", "characters", None),
    "response_length": ("Response length", "characters", None),
    "input_quality_confidence": ("Input quality: tagger confidence", "probability", None),
    "difficulty_confidence": ("Difficulty: tagger confidence", "probability", None),
    "instruct_reward": ("Reward (instruct_reward)", "reward", None),
    "min_neighbor_distance": (
        "Near-duplicate distance (min_neighbor_distance)",
        "squared L2 on unit embeddings; left of the line: near-duplicates",
        None,  # gen_dis's threshold: distance_threshold()
    ),
    "repeat_count": ("Near-duplicates of a record (repeat_count)", "other records", None),
}
FLAG_SUFFIX = "_flag"
# Fields a browsed record keeps beside its conversation (its tags and flags).
SHOWN_FIELDS = (
    *LABELS,
    "other_task_category",
    "intent",
    "knowledge",
    "quality_explanation",
    "instruct_reward",
    "input_quality_confidence",
    "difficulty_confidence",
    "min_neighbor_distance",
    "repeat_count",
    "min_similar_conversation_id",
)
ID_FIELDS = ("conversation_id", "uuid", "id")


def record_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The record files named, a folder standing for the .json/.jsonl files directly in it
    (magpie's own .magpie/ folder and report pages left out). InputError when a path does
    not exist or nothing is found."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix in (".json", ".jsonl")
            )
        elif p.is_file():
            found.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    found = [f for f in found if f.parent.name != STATE_DIR]
    if not found:
        raise InputError(f"{', '.join(map(str, paths))}: no .json or .jsonl records file found")
    return list(dict.fromkeys(found))


def is_rejects(path: Path) -> bool:
    return path.stem.endswith("_rejected")


def shown_files(paths: list[Path], rows: list[dict]) -> list[Path]:
    """The records the page describes: the last stage output of the funnel (its last
    record file: a preference pairs folder is left out), with the filter's rejects when
    that is the filter's kept file, so every record shows with its `filter_reason`. With
    no stage output recognised, every records file given."""
    files = [Path(r["file"]) for r in rows if Path(r["file"]).is_file()]
    if not files:
        return [f for f in record_files(paths) if not is_rejects(f)] or record_files(paths)
    last = files[-1]
    row = next(r for r in rows if Path(r["file"]) == last)
    rejects = Path(row.get("rejected_file") or "")  # where the filter wrote them
    if row["stage"] == "filter" and rejects.is_file():
        return [last, rejects]
    return [last]


class Stats:
    """Counts, numeric values and a reservoir sample, fed one record at a time."""

    def __init__(self, sample: int = DEFAULT_SAMPLE, seed: int = 0, threshold: float = 0.1):
        self.n = 0
        self.threshold = threshold
        self.size = sample
        self.rng = random.Random(seed)
        self.labels = {field: Counter() for field in LABELS}
        self.present: Counter = Counter()  # records holding the field, null or not
        self.flags: Counter = Counter()
        self.numbers = {field: array("d") for field in NUMBERS}  # 8 bytes a value
        self.nulls = Counter()
        self.confidence = {q: [0.0, 0] for q in INPUT_QUALITY}
        self.sample: list[dict] = []

    def add(self, record: dict, default_reason: str | None = None) -> None:
        """Count one record; keep it in the sample with probability size/n (Algorithm R)."""
        self.n += 1
        if default_reason is not None and record.get("filter_reason") is None:
            record = {**record, "filter_reason": default_reason}
        for field, (_, vocab) in LABELS.items():
            self.labels[field][_label(record.get(field), vocab)] += 1
            self.present[field] += field in record
        for k, v in record.items():
            if k.endswith(FLAG_SUFFIX) and v is not None:
                self.flags[f"{k}: {flag_text(v)}"] += 1
        turns = _turns(record)
        values = {
            "instruction_length": next((len(t[1]) for t in turns if t[0] == "user"), None),
            "response_length": next((len(t[1]) for t in turns if t[0] == "assistant"), None),
        }
        for field in NUMBERS:
            value = values[field] if field in values else record.get(field)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and isfinite(value):
                self.numbers[field].append(float(value))
            else:
                self.nulls[field] += 1
            self.present[field] += field in values or field in record
        quality = canonical_label(record.get("input_quality"), INPUT_QUALITY)
        conf = record.get("input_quality_confidence")
        if quality and isinstance(conf, int | float) and isfinite(conf):
            self.confidence[quality][0] += conf
            self.confidence[quality][1] += 1
        slot = len(self.sample) if len(self.sample) < self.size else self.rng.randrange(self.n)
        if slot < self.size:
            shown = _shown(record, turns)
            if slot == len(self.sample):
                self.sample.append(shown)
            else:
                self.sample[slot] = shown

    def summary(self) -> dict:
        """Plain JSON values for the page: bars per label field (nulls as their own bar),
        histograms per numeric field, flags by cause."""
        labels = {}
        for field, (title, vocab) in LABELS.items():
            counts = self.labels[field]
            if not self.present[field]:
                continue  # no record has the field (a null one counts: it is shown)
            order = list(vocab) if vocab else [k for k, _ in counts.most_common() if k != NULL]
            if field == "language" and len(order) > TOP_LANGUAGES:
                rest = sum(counts[k] for k in order[TOP_LANGUAGES:])
                bars = [[k, counts[k]] for k in order[:TOP_LANGUAGES]] + [["(other)", rest]]
            else:
                bars = [[k, counts[k]] for k in order]
            bars.append([NULL, counts[NULL]])
            labels[field] = {"title": title, "bars": bars}
        if "input_quality" in labels:
            labels["input_quality"]["confidence"] = {
                q: round(s / c, 3) for q, (s, c) in self.confidence.items() if c
            }
        numbers = {}
        for field, (title, unit, threshold) in NUMBERS.items():
            values = self.numbers[field]
            if field == "min_neighbor_distance":
                threshold = self.threshold
            if not values:
                if self.present[field]:  # every one null: said, not dropped
                    numbers[field] = {"title": title, "unit": unit, "nulls": self.n, "count": 0}
                continue
            numbers[field] = {"title": title, "unit": unit, "nulls": self.nulls[field]}
            numbers[field].update(histogram(np.frombuffer(values), threshold))
        return {
            "records": self.n,
            "labels": labels,
            "numbers": numbers,
            "flags": dict(self.flags.most_common()),
        }


def histogram(values: np.ndarray, threshold: float | None, bins: int = 30) -> dict:
    """Bin edges and counts (integer values get integer-wide bins), median, and how many
    fall below the threshold."""
    lo, hi = float(values.min()), float(values.max())
    integral = bool(np.all(values == np.round(values)))
    if integral and hi - lo < bins:
        edges = np.arange(lo, hi + 2) - 0.5
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    counts, edges = np.histogram(values, bins=edges)
    out = {
        "edges": [round(float(e), 6) for e in edges],
        "counts": counts.tolist(),
        "count": int(values.size),
        "median": round(float(np.median(values)), 6),
        "threshold": threshold,
    }
    if threshold is not None:
        out["below"] = int((values < threshold).sum())
    return out


def flag_text(value) -> str:
    """A flag's value as the page's filter spells it (JSON.stringify's, for non-strings)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _label(value, vocab: tuple[str, ...] | None) -> str:
    if value is None:
        return NULL
    if vocab:
        return canonical_label(value, vocab) or NULL
    return value if isinstance(value, str) else json.dumps(value)


def _turns(record: dict) -> list[list]:
    """[role, text, reasoning] per turn: the whole conversation, an unanswered last turn
    included (the page shows what a record holds)."""
    try:
        turns = read(record).turns
    except ConversationError:
        turns = []
    if not any(t.role == "user" for t in turns) and "instruction" in record:
        # A ShareGPT record keeps only complete exchanges in `conversations` (concat): an
        # unanswered or flagged one still has its flat fields.
        try:
            turns = read({k: v for k, v in record.items() if k not in LIST_FIELDS}).turns
        except ConversationError:
            pass
    return [[t.role, t.text, t.reasoning] for t in turns if isinstance(t.text, str)]


def _shown(record: dict, turns: list[list]) -> dict:
    """What the browser needs of a record: id, turns, tags, flags."""
    rid = next((record[k] for k in ID_FIELDS if record.get(k) is not None), None)
    tags = {k: _json_safe(record[k]) for k in SHOWN_FIELDS if record.get(k) is not None}
    for field, (_, vocab) in LABELS.items():  # as counted, so that filters match the bars
        label = _label(record.get(field), vocab)
        if label == NULL:
            tags.pop(field, None)
        else:
            tags[field] = label
    flags = {k: v for k, v in record.items() if k.endswith(FLAG_SUFFIX) and v is not None}
    return _json_safe({"id": rid, "turns": turns, "tags": tags, "flags": flags})


def _json_safe(value):
    """NaN and infinities (which Python's json reads) as text, at any depth: JSON.parse has
    no such number."""
    if isinstance(value, float) and not isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def distance_threshold(rows: list[dict]) -> float:
    """The near-duplicate threshold gen_dis used (its meta file's settings), else the one
    it uses by default."""
    settings: dict = {}
    for row in rows:
        if row["stage"] == "gen_dis":
            settings = meta_settings(Path(row["file"]))
    given = settings.get("distance_distance_threshold")  # gen_dis's order: this one first
    if given is None:
        given = settings.get("distance_threshold")
    if given is not None:
        return float(given)
    return default_threshold(settings.get("sentence_model"))[0]


def collect(paths: Iterable[str | os.PathLike], sample: int = DEFAULT_SAMPLE) -> dict:
    """Everything the page shows about the run or files at `paths`: the funnel, the
    statistics of the last stage's records (all of them) and a sample of them."""
    paths = list(paths)
    rows = funnel(paths)
    shown = shown_files(paths, rows)
    threshold = distance_threshold(rows)
    stats = Stats(sample, threshold=threshold)
    for f in shown:
        reason = KEPT if len(shown) == 2 and f == shown[0] else None
        records = iter_records(f, allow_empty=True)  # streamed: a bar of records, no total
        for record in tqdm(records, desc=f"report {f.name}", unit="rec", mininterval=1):
            stats.add(record, reason)
    return {
        "title": ", ".join(str(p) for p in paths),
        "files": [f.name for f in shown],
        "funnel": rows,
        "stats": stats.summary(),
        "sample": stats.sample,
        "sample_size": len(stats.sample),
        "threshold": threshold,
    }
