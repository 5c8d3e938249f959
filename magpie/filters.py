"""Filtering tagged records into a training set (the original's data_filter.ipynb and
fms-dgt's magpie_filter), driven by flags or a YAML preset (shipped ones, loadable by name,
in magpie/configs/filters/).

Rules, each off unless set, checked in this order:

- generation_flags: drop records a generation stage flagged (any non-null `*_flag`,
  e.g. `instruction_flag`, `response_flag`; README "Records") and records whose
  conversation is not whole (magpie.conversation's rule: no complete exchange, or a turn
  after the last complete exchange, such as an unanswered follow-up).
- input_quality: allowed labels, e.g. [good, excellent] (the original's rule).
- min_instruct_reward: keep when `instruct_reward` > this (the original used -10).
- no_trailing_colon: drop instructions ending with a colon (the original's rule), of any
  script (":", "：", ...), closing quotes, brackets and whitespace after it aside.
- remove_duplicates: drop a record whose near-duplicate representative
  (`min_similar_conversation_id` / `min_similar_uuid`, from gen_dis) is another record.
- sample_quality: allowed 1-5 judge scores, e.g. [4, 5] (fms-dgt), read from
  `sample_quality_field` (default `sample_quality`, as unitag writes it).
- difficulty, task_category, language: allowed values (language as ISO 639-1, any case).
- safe_only: keep only records whose `llama_guard_2` verdict is "safe".
- response_pattern: keep responses matching this regular expression (searched; for a
  conversation, its first response), e.g. "^## Step 1" for step-by-step answers.

A missing or null tag fails its rule instead of crashing (the original's `> -10` raised on
null rewards). A rule the settings name always applies, with one exception: a rule whose
field no record has at all (its stage did not run for this file: no reward model for
`instruct_reward`, no gen_dis for `remove_duplicates`) is not applied, and the log says
which and why. A field that is present but null (the stage ran and could not judge: the
embedded tagger stores null difficulty, task_category and llama_guard_2 with the reason
"cannot_judge: ..." in `tag_errors`) fails the rule like any other value outside it, in
every record, whatever else the file holds; the log says how many records each rule
fails on a null and the reasons in `tag_errors` (`FilterReport.null_failed`). The
survivors can be capped at `max_per_category` records per `task_category` (a seeded random choice within each category: rebalancing, as for the
original's DPO subsets), cut to the `top_k` longest responses and shuffled with `seed`;
fewer survivors than a cap is fine. Rejected records keep the rule that
rejected them (`filter_reason`, the first failed in the order above) and every rule they
failed (`filter_failed`).

A file is filtered in two passes over it (`run_filter`) that hold a few bytes per record,
never the records, and write what `apply_filters` returns for the same records in memory.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import re
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from magpie.conversation import Conversation, ConversationError, read
from magpie.labels import DIFFICULTY, INPUT_QUALITY, SAMPLE_QUALITY_SCORES, TASK_CATEGORIES
from magpie.records import InputError, RecordWriter, Spool, iter_records
from magpie.resources import FILTER_PRESETS_DIR, filter_presets
from magpie.sanitize import ends_with_colon
from magpie.sharegpt import canonical_label

RULES = (
    "generation_flags",
    "input_quality",
    "min_instruct_reward",
    "no_trailing_colon",
    "remove_duplicates",
    "sample_quality",
    "difficulty",
    "task_category",
    "language",
    "safe_only",
    "response_pattern",
)


@dataclass
class FilterConfig:
    """Which rules run and with what values; None / False turns a rule off."""

    generation_flags: bool = True
    input_quality: list[str] | None = None
    min_instruct_reward: float | None = None
    no_trailing_colon: bool = False
    remove_duplicates: bool = False
    sample_quality: list[int] | None = None
    sample_quality_field: str = "sample_quality"
    difficulty: list[str] | None = None
    task_category: list[str] | None = None
    language: list[str] | None = None
    safe_only: bool = False
    safety_field: str = "llama_guard_2"
    response_pattern: str | None = None
    max_per_category: int | None = None
    top_k: int | None = None
    shuffle: bool = False
    seed: int = 42

    def __post_init__(self) -> None:
        self.input_quality = _labels("input_quality", self.input_quality, INPUT_QUALITY)
        self.difficulty = _labels("difficulty", self.difficulty, DIFFICULTY)
        self.task_category = _labels("task_category", self.task_category, TASK_CATEGORIES)
        if self.sample_quality is not None:
            scores = [_score(v) for v in _as_list(self.sample_quality)]
            if None in scores:
                raise InputError(f"sample_quality: scores are 1..5, got {self.sample_quality!r}")
            self.sample_quality = scores
        if self.language is not None:
            self.language = [str(v).upper() for v in _as_list(self.language)]
        if self.min_instruct_reward is not None:
            self.min_instruct_reward = float(self.min_instruct_reward)
        for name in ("max_per_category", "top_k"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InputError(f"{name} must be a non-negative integer, got {value!r}")
        if self.response_pattern is not None:
            try:
                re.compile(self.response_pattern)
            except re.error as e:
                raise InputError(f"response_pattern {self.response_pattern!r}: {e}") from None

    def active(self) -> list[str]:
        return [r for r in RULES if getattr(self, r) not in (None, False)]


def _as_list(value) -> list:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)):
        return [value]
    return list(value)


def _labels(name: str, value, vocab: tuple[str, ...]) -> list[str] | None:
    """Check configured labels against the vocabulary (a typo would silently drop all)."""
    if value is None:
        return None
    out = []
    for v in _as_list(value):
        canon = canonical_label(v, vocab)
        if canon is None:
            raise InputError(f"{name}: unknown label {v!r}; choose from {', '.join(vocab)}")
        out.append(canon)
    return out


def _score(value) -> int | None:
    """A 1-5 judge score from 4, 4.0 or "4"; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value in SAMPLE_QUALITY_SCORES else None


def preset_path(preset: str | os.PathLike) -> Path:
    """A preset's file: the path as given when it exists, else the shipped preset of that
    name (`magpie` or `magpie.yaml`, from magpie/configs/filters/), so a preset loads from
    any folder and from an installed wheel."""
    path = Path(preset)
    if path.is_file():  # not a folder: `magpie` is also the package's folder in a checkout
        return path
    if path.name == str(preset) and path.suffix in ("", ".yaml"):
        shipped = FILTER_PRESETS_DIR / f"{path.stem}.yaml"
        if shipped.exists():
            return shipped
    raise InputError(
        f"{preset}: filter preset not found (a YAML file, or one of the shipped presets: "
        f"{', '.join(filter_presets())})"
    )


def load_filter_config(path: str | os.PathLike | None = None, **overrides) -> FilterConfig:
    """A preset (a YAML file or a shipped preset's name, see preset_path) with the non-None
    overrides on top; unknown keys are refused."""
    values: dict = {}
    if path:
        path = preset_path(path)
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise InputError(f"{path}: malformed YAML ({e})") from None
        if not isinstance(values, dict):
            raise InputError(f"{path}: expected a mapping of filter settings")
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(FilterConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(
            f"{path or 'filter settings'}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    return FilterConfig(**values)


# ---------------------------------------------------------------------------------------
# Rules: each returns True when the record passes


# A record's id field, first found; gen_dis writes `min_similar_<that name>`.
ID_FIELDS = ("uuid", "conversation_id", "id")


def _id_of(record: dict) -> tuple[str, object] | None:
    for name in ID_FIELDS:
        if name in record:
            return name, record[name]
    return None


def _conversation(record: dict) -> Conversation:
    """The record's conversation (empty when it has none or it is malformed)."""
    try:
        return read(record)
    except ConversationError:
        return Conversation([])


def check(record: dict, cfg: FilterConfig) -> list[str]:
    """The rules this record fails (empty: it passes)."""
    failed = []
    conv = _conversation(record)
    if cfg.generation_flags and (
        any(k.endswith("_flag") and v is not None for k, v in record.items())
        or not conv.is_complete
    ):
        failed.append("generation_flags")
    if cfg.input_quality is not None:
        if canonical_label(record.get("input_quality"), INPUT_QUALITY) not in cfg.input_quality:
            failed.append("input_quality")
    if cfg.min_instruct_reward is not None:
        reward = record.get("instruct_reward")
        ok = isinstance(reward, (int, float)) and not isinstance(reward, bool)
        if not (ok and reward > cfg.min_instruct_reward):
            failed.append("min_instruct_reward")
    if cfg.no_trailing_colon:
        text = conv.first_user
        if not text or ends_with_colon(text):
            failed.append("no_trailing_colon")
    if cfg.remove_duplicates:
        ident = _id_of(record)
        key = f"min_similar_{ident[0]}" if ident else None
        if key is None or key not in record:
            failed.append("remove_duplicates")  # not annotated by gen_dis
        elif record[key] is not None and record[key] != ident[1]:
            failed.append("remove_duplicates")
    if cfg.sample_quality is not None:
        if _score(record.get(cfg.sample_quality_field)) not in cfg.sample_quality:
            failed.append("sample_quality")
    if cfg.difficulty is not None:
        if canonical_label(record.get("difficulty"), DIFFICULTY) not in cfg.difficulty:
            failed.append("difficulty")
    if cfg.task_category is not None:
        if canonical_label(record.get("task_category"), TASK_CATEGORIES) not in cfg.task_category:
            failed.append("task_category")
    if cfg.language is not None:
        lang = record.get("language")
        if not isinstance(lang, str) or lang.upper() not in cfg.language:
            failed.append("language")
    if cfg.safe_only:
        verdict = record.get(cfg.safety_field)
        if not isinstance(verdict, str) or verdict.strip().split("\n")[0].strip().lower() != "safe":
            failed.append("safe_only")
    if cfg.response_pattern is not None:
        text = first_response(record)
        if text is None or not re.search(cfg.response_pattern, text, re.MULTILINE):
            failed.append("response_pattern")
    return failed


def first_response(record: dict) -> str | None:
    """The answer of the first complete exchange, or None."""
    exchanges = _conversation(record).exchanges()
    return exchanges[0][1].text if exchanges else None


def response_length(record: dict) -> int:
    """Characters of the answers of the complete exchanges."""
    return sum(len(answer.text) for _, answer in _conversation(record).exchanges())


@dataclass
class FilterReport:
    records_in: int
    kept: int
    rejected: Counter  # first failed rule -> count
    failed: Counter  # rule -> records failing it (a record may fail several)
    seconds: float
    not_applied: dict = dataclasses.field(default_factory=dict)  # rule -> why
    null_failed: dict = dataclasses.field(default_factory=dict)  # rule -> note on nulls

    def line(self) -> str:
        rejected = ", ".join(f"{k} {v}" for k, v in self.rejected.most_common()) or "none"
        failed = ", ".join(f"{k} {v}" for k, v in self.failed.most_common()) or "none"
        return (
            f"[filter] records in {self.records_in}, kept {self.kept}, rejected "
            f"{sum(self.rejected.values())} (by rule: {rejected}; failing each rule: {failed}); "
            f"{self.seconds:.1f} s"
        )


# The stage that writes each tag rule's field, for the note on a rule not applied.
MADE_BY = {
    "input_quality": "unitag's quality mission",
    "min_instruct_reward": "unitag's reward mission (it needs --reward_model_path)",
    "remove_duplicates": "gen_dis",
    "sample_quality": "unitag's sample_quality mission",
    "difficulty": "unitag's difficulty mission",
    "task_category": "unitag's classification mission",
    "language": "unitag's language mission",
    "safe_only": "unitag's safety mission",
}


def _fields(rule: str, cfg: FilterConfig) -> tuple[str, ...]:
    """The record fields a tag rule reads (any one present counts)."""
    if rule == "remove_duplicates":
        return tuple(f"min_similar_{name}" for name in ID_FIELDS)
    named = {
        "min_instruct_reward": "instruct_reward",
        "sample_quality": cfg.sample_quality_field,
        "safe_only": cfg.safety_field,
    }
    return (named.get(rule, rule),)


# The unitag mission whose reason for a null field is in `tag_errors[<mission>]`.
MISSION_OF = {
    "input_quality": "quality",
    "min_instruct_reward": "reward",
    "sample_quality": "sample_quality",
    "difficulty": "difficulty",
    "task_category": "classification",
    "language": "language",
    "safe_only": "safety",
}


# ---------------------------------------------------------------------------------------
# Applying the rules: one pass learns a few bytes per record, the caps and the order are
# decided on those, and a second pass writes the records (see `run_filter`).

_BIT = {rule: 1 << i for i, rule in enumerate(RULES)}


@functools.cache
def _rules_of(mask: int) -> tuple[str, ...]:
    """The rules of a bit mask, in RULES order (the order `check` lists them in)."""
    return tuple(rule for rule in RULES if mask & _BIT[rule])


def _null_reason(record: dict, field: str, mission: str) -> str:
    """Why a record's tag field is null, as its tagger said in `tag_errors` (first word)."""
    why = (record.get("tag_errors") or {}).get(mission)
    if field not in record:
        why = "field missing"
    return str(why).split(":")[0].strip() if why else "no reason recorded"


class _Tally:
    """What the rules, the caps and the report need of each record, learnt one record at a
    time and kept in a few bytes per record: its failed rules (a bit mask of every rule of
    the settings: which apply is known only at the end), its task category and response
    length when a cap needs them; which tag fields some record has (`not_applicable`) and
    the reasons of the records failing a tag rule on a null field (`null_failures`)."""

    def __init__(self, cfg: FilterConfig) -> None:
        self.cfg = cfg
        self.count = 0
        self.masks = array("H")
        self.categories = array("b")  # index in TASK_CATEGORIES; -1: none
        self.lengths = array("q")
        active = cfg.active()
        self.unseen = {r: _fields(r, cfg) for r in active if r in MADE_BY}  # no record has
        self.reasons = {r: Counter() for r in MISSION_OF if r in active}  # MISSION_OF order

    def add(self, record: dict) -> None:
        fails = check(record, self.cfg)
        self.count += 1
        self.masks.append(sum(_BIT[rule] for rule in fails))
        if self.cfg.max_per_category is not None:
            label = canonical_label(record.get("task_category"), TASK_CATEGORIES)
            self.categories.append(-1 if label is None else TASK_CATEGORIES.index(label))
        if self.cfg.top_k is not None:
            self.lengths.append(response_length(record))
        for rule in [r for r, fields in self.unseen.items() if any(f in record for f in fields)]:
            del self.unseen[rule]
        for rule, reasons in self.reasons.items():
            field = _fields(rule, self.cfg)[0]
            if rule in fails and record.get(field) is None:
                reasons[_null_reason(record, field, MISSION_OF[rule])] += 1

    def not_applicable(self) -> dict[str, str]:
        """{rule: why} for the active tag rules whose field no record has at all: the
        stage that writes it did not run for this file. A field present but null (the
        stage ran and could not judge) does not make a rule inapplicable: see
        `null_failures`."""
        if not self.count:
            return {}
        return {
            rule: f"no record has {' or '.join(fields)}: {MADE_BY[rule]} did not run"
            for rule, fields in self.unseen.items()
        }

    def null_failures(self, skipped: dict) -> dict[str, str]:
        """{rule: note} for the applied tag rules that records fail because their field is
        null or missing, with the reasons their tagger gave (`tag_errors`), e.g.
        "difficulty fails 32 of 32 records because their difficulty is null: its tagger
        could not judge them (tag_errors.difficulty: cannot_judge 32)"."""
        out = {}
        for rule, reasons in self.reasons.items():
            if rule in skipped or not reasons:
                continue
            field, mission = _fields(rule, self.cfg)[0], MISSION_OF[rule]
            n = sum(reasons.values())
            judged = "could not judge" if "cannot_judge" in reasons else "did not tag"
            listed = ", ".join(f"{why} {count}" for why, count in reasons.most_common())
            null = "null or missing" if "field missing" in reasons else "null"
            out[rule] = (
                f"{rule} fails {n} of {self.count} records because their {field} is {null}: "
                f"its tagger ({MADE_BY[rule]}) {judged} them (tag_errors.{mission}: {listed}); "
                f"drop the {rule} rule to keep them"
            )
        return out


@dataclass
class _Plan:
    """Where each record goes, by its position in the input."""

    masks: np.ndarray  # the applied rules each record fails (bit mask; 0: passes them)
    kept: np.ndarray  # positions of the kept records, in output order
    capped: list[tuple[str, np.ndarray]]  # (cap, positions it rejects, ascending)
    report: FilterReport


def _plan(tally: _Tally, cfg: FilterConfig, start: float) -> _Plan:
    """Rules whose field no record has are not applied (`FilterReport.not_applied`); the
    records passing the others are capped at `max_per_category` (a seeded random choice
    within each category, input order kept), cut to the `top_k` longest responses (longest
    first, ties in input order) and shuffled with `seed`. The random draws are those of
    the same calls on lists of the records, so a seed chooses what it always chose."""
    skipped = tally.not_applicable()
    applied = np.uint16(sum(_BIT[r] for r in RULES if r not in skipped))
    masks = np.frombuffer(tally.masks, dtype=np.uint16) & applied
    first, failed = Counter(), Counter()
    # Counted mask by mask in the order each first occurs: the counters' keys come in the
    # order record by record counting puts them in (most_common lists ties that way).
    values, firsts, counts = np.unique(masks, return_index=True, return_counts=True)
    for i in np.argsort(firsts):
        if values[i]:
            rules = _rules_of(int(values[i]))
            first[rules[0]] += int(counts[i])
            failed.update({rule: int(counts[i]) for rule in rules})
    kept = np.flatnonzero(masks == 0)
    capped = []
    if cfg.max_per_category is not None:
        kept, over = _cap_per_category(kept, tally, cfg.max_per_category, cfg.seed)
        if len(over):  # a rule that rejected none is not listed with 0
            capped.append(("max_per_category", over))
            first["max_per_category"] += len(over)
            failed["max_per_category"] += len(over)
    if cfg.top_k is not None:
        # stable: equal lengths stay in input order, as sorted() by -length keeps them
        order = np.argsort(-np.frombuffer(tally.lengths, dtype=np.int64)[kept], kind="stable")
        if len(kept) > cfg.top_k:
            cut = np.sort(kept[order[cfg.top_k :]])
            capped.append(("top_k", cut))
            first["top_k"] += len(cut)
            failed["top_k"] += len(cut)
            order = order[: cfg.top_k]
        kept = kept[order]
    if cfg.shuffle:
        # random.shuffle of a list of this length, on 8-byte slots instead of list items
        shuffled = array("q", kept.astype(np.int64).tobytes())
        random.Random(cfg.seed).shuffle(shuffled)
        kept = np.frombuffer(shuffled, dtype=np.int64)
    nulls = tally.null_failures(skipped)
    report = FilterReport(
        tally.count, len(kept), first, failed, time.time() - start, skipped, nulls
    )
    return _Plan(masks, kept, capped, report)


def _cap_per_category(
    kept: np.ndarray, tally: _Tally, cap: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, over): at most `cap` of the positions `kept` per task_category, chosen at
    random (seeded) within each, both in input order. Records without a category form one
    group, drawn last; the others are drawn in the order of their names."""
    codes = np.frombuffer(tally.categories, dtype=np.int8)[kept]
    labels = {int(c): None if c < 0 else TASK_CATEGORIES[c] for c in np.unique(codes)}
    rng = random.Random(seed)
    chosen = np.ones(len(kept), dtype=bool)
    for code in sorted(labels, key=lambda c: (labels[c] is None, labels[c] or "")):
        members = np.flatnonzero(codes == code)
        if len(members) > cap:
            # rng.sample draws positions from the length alone: sampling range(n) picks
            # the positions sampling a list of the n members would pick.
            chosen[members] = False
            chosen[members[rng.sample(range(len(members)), cap)]] = True
    return kept[chosen], kept[~chosen]


def _rejected(record: dict, rules: tuple[str, ...]) -> dict:
    """The record as the rejects file holds it: with the rule that rejected it first."""
    return record | {"filter_reason": rules[0], "filter_failed": list(rules)}


def apply_filters(
    records: list[dict], cfg: FilterConfig
) -> tuple[list[dict], list[dict], FilterReport]:
    """Kept records (capped, top-K, shuffled as configured) and rejected ones with their
    reason, from records in memory (`run_filter` does the same to a file without holding
    it). Rules whose field no record has are not applied (`FilterReport.not_applied`);
    records failing a rule on a null field are counted with their reasons
    (`FilterReport.null_failed`)."""
    start = time.time()
    tally = _Tally(cfg)
    for record in records:
        tally.add(record)
    plan = _plan(tally, cfg, start)
    kept = [records[i] for i in plan.kept]
    rejected = [
        _rejected(records[i], _rules_of(int(plan.masks[i]))) for i in np.flatnonzero(plan.masks)
    ]
    for rule, positions in plan.capped:
        rejected.extend(_rejected(records[i], (rule,)) for i in positions)
    return kept, rejected, plan.report


def filtered_file_names(input_file: str | os.PathLike) -> tuple[Path, Path]:
    """<stem>_filtered.jsonl and <stem>_rejected.jsonl next to the input."""
    p = Path(input_file)
    return p.with_name(p.stem + "_filtered.jsonl"), p.with_name(p.stem + "_rejected.jsonl")


def run_filter(
    input_file: str | os.PathLike,
    cfg: FilterConfig,
    output_file: str | os.PathLike | None = None,
    rejected_file: str | os.PathLike | None = None,
) -> FilterReport:
    """Filter a file; kept and rejected records are written atomically, in the order
    `apply_filters` gives them, without holding the records: a first pass over the input
    checks each record and keeps a few bytes of it (`_Tally`), a second writes the records
    that fail a rule to the rejects as they come, and the kept ones to the output as they
    come, or, when a cap or the order needs all of them first, to a spool (`magpie.records.Spool`)
    beside the output, read back in the output's order."""
    start = time.time()
    default_out, default_rej = filtered_file_names(input_file)
    output = Path(output_file) if output_file else default_out
    rejected_path = Path(rejected_file) if rejected_file else default_rej
    tally = _Tally(cfg)
    for record in iter_records(input_file):
        tally.add(record)
    plan = _plan(tally, cfg, start)
    masks, kept = plan.masks, plan.kept
    in_order = not plan.capped and bool(np.all(kept[1:] > kept[:-1]))
    output.parent.mkdir(parents=True, exist_ok=True)
    spool = None if in_order else Spool(output.parent)
    try:
        with RecordWriter(output) as out, RecordWriter(rejected_path) as rejects:
            for i, record in enumerate(iter_records(input_file)):
                if masks[i]:
                    rejects.write(_rejected(record, _rules_of(int(masks[i]))))
                elif spool is None:
                    out.write(record)
                else:
                    spool.add(record)
            if spool is not None:  # spooled in input order: number n is passing[n]
                passing = np.flatnonzero(masks == 0)
                for rule, positions in plan.capped:
                    for n in np.searchsorted(passing, positions):
                        rejects.write(_rejected(spool[int(n)], (rule,)))
                for n in np.searchsorted(passing, kept):
                    out.write(spool[int(n)])
    finally:
        if spool is not None:
            spool.close()
    report = plan.report
    print(report.line())
    for rule, why in report.not_applied.items():
        print(f"[filter] {rule} not applied: {why}")
    for note in report.null_failed.values():
        print(f"[filter] {note}")
    applied = [r for r in cfg.active() if r not in report.not_applied]
    print(f"[filter] rules: {json.dumps(applied)}; wrote {output} and {rejected_path}")
    return report
