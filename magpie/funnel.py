"""The funnel of a run: how many records went into and out of each stage, and why some
were flagged or rejected, read from the stages' outputs and their meta files.

Every stage writes its output and `.magpie/<output name>.meta.json` beside it
(magpie.records.meta_path): {"settings": {"stage": ..., "input": path} or
{"input_files": [...]}, "input_sha256": ...}. The settings name the stage and the file(s)
it read, so the outputs found in a run folder link into a chain (gen_ins → gen_res →
unitag missions → concat → gen_dis → filter, and gen_po_multi_res → gen_po_rewards →
gen_po_pairs), ordered here by that chain. Outputs made before stages wrote meta files
(concat, gen_dis, filter, gen_po_pairs) are recognised by the names those stages give by
default (`*_sharegpt.jsonl`, `*_distance.jsonl`, `*_filtered.jsonl`, `*_dpo/`).

The numbers mean what the stages' summary lines mean ("[stage] records in X, out Y;
flagged: ..."): records in are the records of the stage's input(s), records out those of
its output, flags the causes the stage itself gave (a `*_flag` field it added, a tag
mission's error, a near-duplicate; or the `flags` its meta file keeps, where the records
cannot show them: concat's incomplete turns left out), rejections the filter's first failed rule
(`filter_reason` in its rejects file). Records are streamed (magpie.records.iter_records),
one at a time, so a run of a million records is counted in constant memory.
"""

from __future__ import annotations

import heapq
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from magpie.records import (
    STATE_DIR,
    InputError,
    count_records,
    iter_records,
    meta_path,
    state_path,
    write_json,
)

# The order of stages in a run: breaks ties between outputs the input chain leaves
# unordered (two missions tagging the same file; unrelated outputs in one folder).
STAGE_ORDER = (
    "gen_ins",
    "gen_res",
    "gen_mt",
    "gen_conv",
    "run_task",
    "unitag",
    "concat",
    "gen_dis",
    "filter",
    "gen_po_multi_res",
    "gen_po_rewards",
    "gen_po_pairs",
)
# The flag fields each generation stage owns, for outputs whose input is not among those
# found (otherwise a stage's own fields are those its input did not have).
OWN_FLAGS = {
    "gen_ins": {"instruction_flag"},
    "gen_res": {"response_flag", "response_flags"},
    "gen_po_multi_res": {"response_flag", "response_flags"},
    "gen_po_rewards": {"rewards_flag"},
}
# Stages whose summary counts records holding special-token strings as a flag.
SPECIAL_TEXT = "special_tokens_in_text"
COUNTS_SPECIAL_TEXT = {"gen_res", "gen_po_multi_res", "unitag"}
# The stage of a file given by name that no meta file or default name places.
UNKNOWN = "file"
# Default output names of the stages that wrote no meta file in earlier versions.
_BY_NAME = (
    ("_sharegpt.jsonl", "concat"),
    ("_distance.jsonl", "gen_dis"),
    ("_filtered.jsonl", "filter"),
)


def funnel(paths: list[str | Path]) -> list[dict]:
    """One dict per stage output found in `paths` (run folders, searched with their
    subfolders, and/or output files), in the order of the input chain:

    - `stage`: the stage's name as its summary line prints it ("gen_res",
      "unitag difficulty", "filter" ...; "file" for a file given by name that no stage
      is known to have made: its records are counted, records in are None);
    - `file`: the output (a folder for gen_po_pairs);
    - `inputs`: the files it read (absolute paths);
    - `records_in`, `records_out`: records of its input(s) and of its output (None for an
      input that no longer exists);
    - `flags`: {cause: records} the stage flagged;
    - `rejected`: {rule: records} the filter rejected, by first failed rule ({} elsewhere);
    - `rejected_file`: where the filter wrote them ("" elsewhere).

    InputError when a path does not exist or an output cannot be read."""
    outputs: dict[Path, dict] = {}
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InputError(f"{path}: no such run folder or output file")
        if path.is_dir():
            found = _outputs_in(path)
        else:  # a file named by the caller is counted even when no stage claims it
            found = [_output(path) or _named(path.resolve(), UNKNOWN, [])]
        for entry in found:
            if entry is not None:
                outputs.setdefault(entry["path"], entry)
    ordered = _in_chain_order(outputs)
    counted: dict[Path, dict] = {}
    for entry in ordered:
        counted[entry["path"]] = _count(entry, counted)
    return [_row(entry, counted) for entry in ordered]


# ------------------------------------------------------------------ finding the outputs
def _outputs_in(folder: Path) -> list[dict | None]:
    """The stage outputs in a folder and its subfolders: those with a meta file, and
    those named as concat, gen_dis, filter and gen_po_pairs name theirs."""
    found: list[dict | None] = []
    for meta in sorted(folder.rglob(f"{STATE_DIR}/*.meta.json")):
        output = meta.parent.parent / meta.name[: -len(".meta.json")]
        if output.exists():
            found.append(_output(output))
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != STATE_DIR)
        here = Path(root)
        for name in sorted(files):
            if any(name.endswith(suffix) for suffix, _ in _BY_NAME):
                found.append(_output(here / name))
        for name in dirs:
            if name.endswith("_dpo") and (here / name / "train.jsonl").exists():
                found.append(_output(here / name))
    return found


def _output(path: Path) -> dict | None:
    """A stage output: {path, stage, mission, inputs, settings}; None for a file that no
    stage is known to have made (no meta file, no stage's default name)."""
    path = path.resolve()
    meta = _read_meta(path)
    settings = (meta or {}).get("settings") or {}
    stage = settings.get("stage")
    if stage:
        inputs = settings.get("input_files")
        if inputs is None:
            inputs = [settings["input"]] if settings.get("input") else []
        return {
            "path": path,
            "stage": str(stage),
            "mission": settings.get("mission"),
            "inputs": [Path(p).resolve() for p in inputs],
            "settings": settings,
            "flags": meta.get("flags") if isinstance(meta.get("flags"), dict) else None,
        }
    return _output_by_name(path)


def _output_by_name(path: Path) -> dict | None:
    """An output recognised by its stage's default name, its input beside it (concat's
    inputs cannot be known from its name: records in are then its records out)."""
    name = path.name
    if path.is_dir():
        if not name.endswith("_dpo"):
            return None
        return _named(path, "gen_po_pairs", _sibling(path, name[: -len("_dpo")]))
    for suffix, stage in _BY_NAME:
        if name.endswith(suffix):
            inputs = [] if stage == "concat" else _sibling(path, name[: -len(suffix)])
            return _named(path, stage, inputs)
    return None


def _named(path: Path, stage: str, inputs: list[Path]) -> dict:
    return {
        "path": path,
        "stage": stage,
        "mission": None,
        "inputs": inputs,
        "settings": {},
        "flags": None,
    }


def _sibling(path: Path, stem: str) -> list[Path]:
    """The input a default name was made from: <stem>.jsonl or <stem>.json beside it."""
    for suffix in (".jsonl", ".json"):
        candidate = path.with_name(stem + suffix)
        if candidate.exists():
            return [candidate.resolve()]
    return []


def _read_meta(output: Path) -> dict | None:
    where = meta_path(output)
    if not where.exists():
        return None
    try:
        meta = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{where}: unreadable meta file ({e})") from None
    return meta if isinstance(meta, dict) else None


# ------------------------------------------------------------------ ordering
def _rank(entry: dict) -> int:
    stage = entry["stage"]
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)


def _in_chain_order(outputs: dict[Path, dict]) -> list[dict]:
    """Every output after the outputs it read (a topological order of the input chain),
    ties broken by the usual order of stages, then by name."""
    waiting = {
        path: {p for p in entry["inputs"] if p in outputs and p != path}
        for path, entry in outputs.items()
    }
    readers: dict[Path, list[Path]] = {path: [] for path in outputs}
    for path, inputs in waiting.items():
        for p in inputs:
            readers[p].append(path)

    def key(path: Path) -> tuple:
        return (_rank(outputs[path]), str(path))

    ready = [key(p) for p, inputs in waiting.items() if not inputs]
    heapq.heapify(ready)
    ordered: list[dict] = []
    done: set[Path] = set()
    while ready or len(done) < len(outputs):
        if not ready:  # a cycle (an output read back as its own input): break it by rank
            rest = min((p for p in outputs if p not in done), key=key)
            waiting[rest].clear()
            heapq.heappush(ready, key(rest))
            continue
        path = Path(heapq.heappop(ready)[1])
        if path in done:
            continue
        done.add(path)
        ordered.append(outputs[path])
        for reader in readers[path]:
            waiting[reader].discard(path)
            if not waiting[reader] and reader not in done:
                heapq.heappush(ready, key(reader))
    return ordered


# ------------------------------------------------------------------ counting
def _files_of(entry: dict) -> list[Path]:
    """The record files of an output (gen_po_pairs: its train and test splits)."""
    path = entry["path"]
    if path.is_dir():
        return [path / name for name in ("train.jsonl", "test.jsonl") if (path / name).exists()]
    return [path]


def _records(files: Iterable[Path]) -> Iterator[dict]:
    for f in files:
        yield from iter_records(f, allow_empty=True)


def _count(entry: dict, counted: dict[Path, dict]) -> dict:
    """The output's records, the flag fields present, and the flags the stage gave: the
    values of the flag fields its input did not have (or, with its input unknown, of
    those its stage owns) and the causes of `_stage_flags`."""
    stage = entry["stage"]
    scan = _scan(entry)
    inputs = [counted[p] for p in entry["inputs"] if p in counted]
    if entry["inputs"] and len(inputs) == len(entry["inputs"]):
        inherited = set().union(*(c["fields"] for c in inputs))
        own = None
    else:
        # Input unknown: a stage counts the flag fields it owns (others it carried along);
        # a file no stage claims, every flag it holds.
        inherited, own = set(), OWN_FLAGS.get(stage, None if stage == UNKNOWN else set())
    flags: Counter = Counter(scan["stage_flags"])
    for key, values in scan["by_field"].items():
        if key not in inherited and (own is None or key in own):
            flags.update(values)
    return {"records": scan["records"], "fields": set(scan["by_field"]), "flags": flags}


def _scan(entry: dict) -> dict:
    """One streaming pass over an output: {records, by_field: {flag field: {value:
    records}}, stage_flags: {cause: records}}. Kept in `.magpie/<output name>.funnel.json`
    while the output's files are unchanged (size and mtime), so that the card, rewritten
    after each later stage, does not read the whole run again; a folder that cannot be
    written to is read every time."""
    files = _files_of(entry)
    key = {
        "version": 1,
        "stage": entry["stage"],
        "mission": entry["mission"],
        "files": [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files],
    }
    cache = state_path(entry["path"], ".funnel.json")
    try:
        kept = json.loads(cache.read_text(encoding="utf-8"))
        if kept.get("key") == key:
            return kept["scan"]
    except (OSError, ValueError, AttributeError):
        pass
    by_field: dict[str, Counter] = {}
    stage_flags: Counter = Counter()
    n = 0
    for record in _records(files):
        n += 1
        for name, value in record.items():
            if not (name.endswith("_flag") or name.endswith("_flags")):
                continue
            values = value if isinstance(value, list) else [value]
            counter = by_field.setdefault(name, Counter())
            counter.update(str(v) for v in values if v is not None and v is not False)
        _stage_flags(entry["stage"], entry["mission"], record, stage_flags)
    scan = {
        "records": n,
        "by_field": {k: dict(v) for k, v in by_field.items()},
        "stage_flags": dict(stage_flags),
    }
    try:
        write_json(cache, {"key": key, "scan": scan})
    except OSError:
        pass  # a read-only run folder: counted again next time
    return scan


def _stage_flags(stage: str, mission: str | None, record: dict, flags: Counter) -> None:
    """The causes a stage's summary counts that are not `*_flag` fields."""
    if stage in COUNTS_SPECIAL_TEXT and record.get(SPECIAL_TEXT):
        flags[SPECIAL_TEXT] += 1
    if stage == "unitag" and mission:
        reason = (record.get("tag_errors") or {}).get(mission)
        if reason:
            flags[str(reason).split(":")[0]] += 1
    elif stage == "concat":
        for key in record.get("invalid_labels") or {}:
            flags[f"invalid {key}"] += 1
        turns = record.get("conversations")
        if isinstance(turns, list) and not any(
            isinstance(t, dict) and t.get("from") == "gpt" for t in turns
        ):
            flags["no response"] += 1
    elif stage == "gen_dis":
        _near_duplicate_flags(record, flags)


def _near_duplicate_flags(record: dict, flags: Counter) -> None:
    """gen_dis's summary causes (magpie.dedup.stage): no text, a non-finite embedding,
    near-duplicates, a representative other than itself."""
    if record.get("dedup_error"):
        flags["non-finite embedding"] += 1
    elif record.get("min_neighbor_distance") is None and not record.get("repeat_count"):
        flags["no text"] += 1
    if (record.get("repeat_count") or 0) > 0:
        flags["with near-duplicates"] += 1
    for id_field in ("uuid", "conversation_id", "id"):
        key = f"min_similar_{id_field}"
        if key in record:
            rep = record[key]
            if rep is not None and rep != record.get(id_field):
                flags["represented by another"] += 1
            break


def _rejects_file(entry: dict) -> Path | None:
    """The filter's rejects: settings.rejected_file, else <input stem>_rejected.jsonl
    beside its input (magpie.filters.filtered_file_names), else beside the output."""
    given = entry["settings"].get("rejected_file")
    if given:
        return Path(given)
    if entry["inputs"]:
        source = entry["inputs"][0]
        return source.with_name(f"{source.stem}_rejected.jsonl")
    path = entry["path"]
    if path.name.endswith("_filtered.jsonl"):
        return path.with_name(path.name[: -len("_filtered.jsonl")] + "_rejected.jsonl")
    return None


def _rejected(entry: dict) -> dict:
    """{first failed rule: records} from the filter's rejects file."""
    rejects = _rejects_file(entry)
    if rejects is None or not rejects.exists():
        return {}
    rules: Counter = Counter()
    for record in iter_records(rejects, allow_empty=True):
        rules[str(record.get("filter_reason"))] += 1
    return dict(rules.most_common())


def _row(entry: dict, counted: dict[Path, dict]) -> dict:
    """The funnel's row for an output."""
    stage = entry["stage"]
    mine = counted[entry["path"]]
    records_in: int | None = 0
    for p in entry["inputs"]:
        if p in counted:
            n = counted[p]["records"]
        elif p.exists():
            n = count_records(p) if p.is_file() else None
        else:
            n = None
        records_in = None if n is None or records_in is None else records_in + n
    if stage == UNKNOWN:
        records_in = None
    elif not entry["inputs"] and stage != "gen_ins":
        records_in = entry["settings"].get("records", mine["records"])
    name = f"unitag {entry['mission']}" if stage == "unitag" and entry["mission"] else stage
    return {
        "stage": name,
        "file": str(entry["path"]),
        "inputs": [str(p) for p in entry["inputs"]],
        "records_in": records_in,
        "records_out": mine["records"],
        "flags": dict(sorted((mine if entry["flags"] is None else entry)["flags"].items())),
        "rejected": _rejected(entry) if stage == "filter" else {},
        "rejected_file": str(_rejects_file(entry) or "") if stage == "filter" else "",
    }
