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
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from magpie.conversation import Conversation, ConversationError, read
from magpie.labels import DIFFICULTY, INPUT_QUALITY, SAMPLE_QUALITY_SCORES, TASK_CATEGORIES
from magpie.records import InputError, read_records, write_records
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


def not_applicable(records: list[dict], cfg: FilterConfig) -> dict[str, str]:
    """{rule: why} for the active tag rules whose field no record has at all: the stage
    that writes it did not run for this file. A field present but null (the stage ran
    and could not judge) does not make a rule inapplicable: see `null_failures`."""
    out = {}
    for rule in cfg.active():
        if rule not in MADE_BY or not records:
            continue
        fields = _fields(rule, cfg)
        if not any(f in r for r in records for f in fields):
            out[rule] = f"no record has {' or '.join(fields)}: {MADE_BY[rule]} did not run"
    return out


def null_failures(records: list[dict], failed: list[list[str]], cfg: FilterConfig) -> dict:
    """{rule: note} for the applied tag rules that records fail because their field is
    null or missing, with the reasons their tagger gave (`tag_errors`), e.g. "difficulty
    fails 32 of 32 records because their difficulty is null: its tagger could not judge
    them (tag_errors.difficulty: cannot_judge 32)"."""
    out = {}
    for rule, mission in MISSION_OF.items():
        if rule not in cfg.active():
            continue
        field = _fields(rule, cfg)[0]
        reasons: Counter = Counter()
        for record, fails in zip(records, failed, strict=True):
            if rule in fails and record.get(field) is None:
                why = (record.get("tag_errors") or {}).get(mission)
                if field not in record:
                    why = "field missing"
                reasons[str(why).split(":")[0].strip() if why else "no reason recorded"] += 1
        if not reasons:
            continue
        n = sum(reasons.values())
        judged = "could not judge" if "cannot_judge" in reasons else "did not tag"
        listed = ", ".join(f"{why} {count}" for why, count in reasons.most_common())
        null = "null or missing" if "field missing" in reasons else "null"
        out[rule] = (
            f"{rule} fails {n} of {len(records)} records because their {field} is {null}: "
            f"its tagger ({MADE_BY[rule]}) {judged} them (tag_errors.{mission}: {listed}); "
            f"drop the {rule} rule to keep them"
        )
    return out


def apply_filters(
    records: list[dict], cfg: FilterConfig
) -> tuple[list[dict], list[dict], FilterReport]:
    """Kept records (top-K, shuffled as configured) and rejected ones with their reason.
    Rules whose field no record has are not applied (`FilterReport.not_applied`); records
    failing a rule on a null field are counted with their reasons
    (`FilterReport.null_failed`)."""
    start = time.time()
    skipped = not_applicable(records, cfg)
    off = {r: (False if isinstance(getattr(cfg, r), bool) else None) for r in skipped}
    cfg = dataclasses.replace(cfg, **off) if off else cfg
    kept, rejected = [], []
    first, failed = Counter(), Counter()
    all_fails = [check(record, cfg) for record in records]
    for record, fails in zip(records, all_fails, strict=True):
        if fails:
            first[fails[0]] += 1
            failed.update(fails)
            rejected.append(record | {"filter_reason": fails[0], "filter_failed": fails})
        else:
            kept.append(record)
    if cfg.max_per_category is not None:
        kept, over = _cap_per_category(kept, cfg.max_per_category, cfg.seed)
        rejected.extend(
            r | {"filter_reason": "max_per_category", "filter_failed": ["max_per_category"]}
            for r in over
        )
        if over:  # a rule that rejected none is not listed with 0
            first["max_per_category"] += len(over)
            failed["max_per_category"] += len(over)
    if cfg.top_k is not None and len(kept) > cfg.top_k:
        order = sorted(range(len(kept)), key=lambda i: -response_length(kept[i]))  # stable
        chosen = set(order[: cfg.top_k])
        cut = [kept[i] for i in range(len(kept)) if i not in chosen]
        kept = [kept[i] for i in order[: cfg.top_k]]
        rejected.extend(r | {"filter_reason": "top_k", "filter_failed": ["top_k"]} for r in cut)
        first["top_k"] += len(cut)
        failed["top_k"] += len(cut)
    elif cfg.top_k is not None:
        kept.sort(key=lambda r: -response_length(r))
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(kept)
    nulls = null_failures(records, all_fails, cfg)
    report = FilterReport(
        len(records), len(kept), first, failed, time.time() - start, skipped, nulls
    )
    return kept, rejected, report


def _cap_per_category(records: list[dict], cap: int, seed: int) -> tuple[list[dict], list[dict]]:
    """At most `cap` records per task_category, chosen at random (seeded) within each;
    the kept ones stay in input order. Records without a category form one group."""
    groups: dict = {}
    for i, r in enumerate(records):
        groups.setdefault(canonical_label(r.get("task_category"), TASK_CATEGORIES), []).append(i)
    rng = random.Random(seed)
    chosen: set[int] = set()
    for label in sorted(groups, key=lambda g: (g is None, g or "")):  # stable draw order
        members = groups[label]
        chosen.update(members if len(members) <= cap else rng.sample(members, cap))
    kept = [r for i, r in enumerate(records) if i in chosen]
    return kept, [r for i, r in enumerate(records) if i not in chosen]


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
    """Filter a file; kept and rejected records are written atomically."""
    records = read_records(input_file)
    default_out, default_rej = filtered_file_names(input_file)
    output = Path(output_file) if output_file else default_out
    rejected_path = Path(rejected_file) if rejected_file else default_rej
    kept, rejected, report = apply_filters(records, cfg)
    write_records(output, kept)
    write_records(rejected_path, rejected)
    print(report.line())
    for rule, why in report.not_applied.items():
        print(f"[filter] {rule} not applied: {why}")
    for note in report.null_failed.values():
        print(f"[filter] {note}")
    applied = [r for r in cfg.active() if r not in report.not_applied]
    print(f"[filter] rules: {json.dumps(applied)}; wrote {output} and {rejected_path}")
    return report
