"""Concatenation and ShareGPT export (the original's data_concatenation.ipynb).

Shards of tagged records become one JSONL file where each record carries
`conversation_id` = `<prefix>_<n>`, numbered across all shards in order (the original
assumed each shard's `id` ran 0..len-1), and `conversations` = [{from, value}] with
`from` in system | human | gpt. Records are read and written by `magpie.conversation`
(every input format; a system turn is kept) and only complete exchanges are exported:
a trailing unanswered user turn is left out, with its flat keys.

Labels are checked against magpie.labels ("Others" is valid, unlike the original's
whitelist, which had "Other"); an invalid label is set to null *and* kept under
`invalid_labels`, so nothing is nulled silently. An OpenAI `messages` file and a Hugging
Face `datasets` folder can be written from the result.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from magpie.conversation import (
    flat_fields,
    openai_messages,
    read,
    sharegpt_turns,
    without_stale_turns,
)
from magpie.labels import DIFFICULTY, INPUT_QUALITY, TASK_CATEGORIES
from magpie.records import InputError, iter_records, where, write_records

log = logging.getLogger("magpie")

# The original's key order; other keys follow in their own order.
KEY_ORDER = (
    "conversation_id",
    "instruction",
    "response",
    "conversations",
    "gen_input_configs",
    "intent",
    "knowledge",
    "difficulty",
    "difficulty_generator",
    "input_quality",
    "quality_explanation",
    "quality_generator",
    "task_category",
    "other_task_category",
    "task_category_generator",
    "llama_guard_2",
    "instruct_reward",
    "reward_model",
    "language",
)
# Folded into conversation_id / gen_input_configs / conversations.
CONSUMED = {"id", "pre_query_template", "conversation", "messages"}
LABELS = {
    "difficulty": DIFFICULTY,
    "input_quality": INPUT_QUALITY,
    "task_category": TASK_CATEGORIES,
}


def conversations_of(
    record: dict, include_system: bool = True, with_reasoning: bool = False
) -> list[dict]:
    """The record's complete exchanges as ShareGPT turns (magpie.conversation's rule: a
    trailing unanswered user turn is left out); ValueError names what is malformed.
    `with_reasoning` puts a thinking model's `reasoning` back before its answers."""
    return sharegpt_turns(read(record).complete(), include_system, with_reasoning)


def check_labels(record: dict, counts: Counter | None = None) -> dict:
    """Canonical labels (case and spaces forgiven); invalid ones nulled and kept aside."""
    invalid = dict(record.get("invalid_labels") or {})
    for key, vocab in LABELS.items():
        value = record.get(key)
        if value is None:
            continue
        canon = canonical_label(value, vocab)
        if canon is None:
            invalid[key] = value
            record[key] = None
            if counts is not None:
                counts[f"invalid {key}"] += 1
        else:
            record[key] = canon
    others = record.get("other_task_category")
    if isinstance(others, list):
        good = [canonical_label(v, TASK_CATEGORIES) for v in others]
        bad = [v for v, g in zip(others, good, strict=True) if g is None]
        record["other_task_category"] = [g for g in good if g is not None]
        if bad:
            invalid["other_task_category"] = bad
            if counts is not None:
                counts["invalid other_task_category"] += 1
    if invalid:
        record["invalid_labels"] = invalid
    return record


def canonical_label(value, vocab: tuple[str, ...]) -> str | None:
    """The vocabulary's spelling of `value` (case and spacing forgiven; 4 → "4"), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and float(value).is_integer():
        value = str(int(value))
    if not isinstance(value, str):
        return None
    wanted = " ".join(value.split()).lower()
    return next((label for label in vocab if label.lower() == wanted), None)


def to_sharegpt(
    record: dict,
    conversation_id: str,
    include_system: bool = True,
    counts: Counter | None = None,
    with_reasoning: bool = False,
) -> dict:
    """One record in the ShareGPT shape of the original's concatenation, keys in its order."""
    conv = read(record)
    done = conv.complete()
    conversations = sharegpt_turns(done, include_system, with_reasoning)
    out = without_stale_turns(record, len(done.exchanges()))
    out.update(flat_fields(done))
    out["conversation_id"] = conversation_id
    out["conversations"] = conversations
    out.setdefault("instruction", conv.first_user or None)
    out.setdefault("response", None)
    if "pre_query_template" in record:
        configs = dict(out.get("gen_input_configs") or {})
        configs.setdefault("pre_query_template", record["pre_query_template"])
        out["gen_input_configs"] = configs
    check_labels(out, counts)
    ordered = {k: out[k] for k in KEY_ORDER if k in out}
    ordered.update((k, v) for k, v in out.items() if k not in ordered and k not in CONSUMED)
    if counts is not None and not done.has_response:
        counts["no response"] += 1
    elif counts is not None and not conv.is_complete:
        counts["incomplete turns left out"] += 1
    return ordered


def expand_shards(inputs: str | Iterable[str]) -> list[str]:
    """Shard paths from a list, a comma-separated string or glob patterns, in order."""
    if isinstance(inputs, str):
        inputs = [p for p in inputs.split(",") if p.strip()]
    paths: list[str] = []
    for item in inputs:
        item = str(item).strip()
        matches = sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
        if not matches:
            raise InputError(f"{item}: no file matches")
        paths.extend(matches)
    if not paths:
        raise InputError("no input shards given")
    return paths


def concatenate(
    shards: str | Iterable[str],
    output_file: str | os.PathLike | None = None,
    id_prefix: str = "magpie",
    start_id: int = 0,
    include_system: bool = True,
    messages_file: str | os.PathLike | None = None,
    dataset_dir: str | os.PathLike | None = None,
    progress: bool = True,
    with_reasoning: bool = False,
) -> dict:
    """Shards → one ShareGPT JSONL (written atomically); returns counts for the summary.

    Every shard is checked before anything is written, so a bad record in the last shard
    leaves no half-made output: a first streaming pass checks and counts the records, a
    second converts and writes them one at a time (neither holds a shard).
    """
    start = time.time()
    paths = expand_shards(shards)
    output = (
        Path(output_file)
        if output_file
        else Path(paths[0]).with_name(f"{id_prefix}_sharegpt.jsonl")
    )
    counts: Counter = Counter()
    total = sum(_checked_shard_size(path, include_system) for path in paths)

    def converted() -> Iterator[dict]:
        n = start_id
        with tqdm(total=total, desc="concatenate", unit="rec", disable=not progress) as bar:
            for path in paths:
                for record in iter_records(path):
                    yield to_sharegpt(
                        record, f"{id_prefix}_{n}", include_system, counts, with_reasoning
                    )
                    n += 1
                    bar.update()

    write_records(output, converted())
    result = {"output": str(output), "records": total, "shards": len(paths), **counts}
    if messages_file:
        result["messages"] = export_messages(output, messages_file)
    if dataset_dir:
        save_dataset(output, dataset_dir)
        result["dataset_dir"] = str(dataset_dir)
    flags = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    print(
        f"[concat] shards {len(paths)}, records in {total}, out {total}; flagged: {flags}; "
        f"{time.time() - start:.1f} s; wrote {output}"
    )
    return result


def _checked_shard_size(path: str, include_system: bool) -> int:
    """How many records the shard holds, after checking that each has a readable
    conversation (InputError naming the record otherwise); read one record at a time."""
    n = 0
    for n, record in enumerate(iter_records(path), start=1):
        try:
            conversations_of(record, include_system)
        except ValueError as e:
            raise InputError(f"{where(path, n - 1)}: {e}") from None
    return n


def export_messages(sharegpt_file: str | os.PathLike, messages_file: str | os.PathLike) -> int:
    """OpenAI chat fine-tuning lines {"messages": [...]} from a ShareGPT file; records with
    no assistant turn cannot train and are left out (and counted)."""

    skipped = 0

    def lines() -> Iterator[dict]:
        nonlocal skipped
        for record in iter_records(sharegpt_file):
            done = read(record).complete()
            if not done.has_response:
                skipped += 1
                continue
            yield {"messages": openai_messages(done)}

    write_records(messages_file, lines())
    if skipped:
        log.info("messages export: %d records without an assistant turn left out", skipped)
    return skipped


def save_dataset(jsonl_file: str | os.PathLike, dataset_dir: str | os.PathLike) -> None:
    """The JSONL as a Hugging Face `datasets` dataset saved to disk (load_from_disk)."""
    try:
        import datasets
        import datasets.exceptions
    except ImportError:
        raise InputError(
            "saving a dataset needs the datasets package (pip install datasets)"
        ) from None
    cache = tempfile.mkdtemp(prefix="magpie-ds-")
    try:
        ds = datasets.Dataset.from_json(str(jsonl_file), cache_dir=cache)
        ds.save_to_disk(str(dataset_dir))
    except (ValueError, TypeError, datasets.exceptions.DatasetsError) as e:
        raise InputError(f"{jsonl_file}: cannot be stored as a dataset ({e})") from None
    finally:
        shutil.rmtree(cache, ignore_errors=True)
