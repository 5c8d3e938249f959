"""The dataset card of a ShareGPT export.

concat writes `README.md` beside its output in the Hugging Face dataset-card format: a
YAML header (configs and their data files, task categories, the languages the records
hold, the size category, tags, the license when given) and a body saying how the data
was made (the recipe, or each stage's settings), with which models, the funnel of the
run (magpie.funnel) and the filters applied. The stages after concat (gen_dis, filter)
call `after_stage`, which records what they did (a meta file, as the journaled stages
write) and rewrites the card with the funnel grown by their numbers. The Parquet shards
and the upload are magpie.hub.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from magpie.funnel import funnel
from magpie.hub import CARD_NAME, DATA_DIR
from magpie.records import (
    InputError,
    iter_records,
    meta_path,
    meta_settings,
    output_meta,
    read_meta,
    write_json,
    write_text,
)
from magpie.settings import Settings

log = logging.getLogger("magpie")

# In every card magpie writes: a README.md without it is someone else's, never replaced.
MARK = "<!-- dataset card written by magpie (concat; updated by gen_dis and filter) -->"
# Hugging Face's size categories: (upper bound, label), the last one unbounded.
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)
# Settings that name a model, by the key the stages use in their meta files.
MODEL_KEYS = ("model", "model_path", "guard_model", "reward_model", "sentence_model", "detector")
# Settings never shown on a card (a key or a token must not reach a public page).
SECRET_WORDS = ("token", "api_key", "secret", "password")
# The bookkeeping settings left out of the commands shown on a card.
NOT_FLAGS = {"stage", "records", "input", "input_files", "input_file", "mission", "output_file"}
RECIPE_NAMES = ("recipe.yaml", "recipe.yml")
# Settings of a meta file not shown as flags: the tagger's calibration follows from its
# model (magpie.tagging.llm.tagger_settings).
HIDDEN = {"label_priors", "labels"}
# Settings holding a path: stored absolute, shown on a card by their name only.
PATH_KEYS = ("output_file", "rejected_file", "messages_file", "dataset_dir", "parquet_dir")


# ------------------------------------------------------------------ what a stage did
def stage_settings(settings, inputs: Iterable[str | os.PathLike], **changes) -> dict:
    """The meta settings of a stage without a journal: its name, every flag (`changes`
    put over them: what the stage resolved, such as a default folder), and the file(s)
    it read as absolute paths (`input` for one, `input_files` for several, as the
    journaled stages write them)."""
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    values.update(changes)
    for key in PATH_KEYS:  # read later from elsewhere: absolute
        if isinstance(values.get(key), str) and values[key]:
            values[key] = str(Path(values[key]).resolve())
    found = {"stage": settings.stage}
    found.update(json.loads(json.dumps(values, default=str)))
    paths = [str(Path(p).resolve()) for p in inputs]
    if getattr(settings, "input_field", None) == "input_files":
        found["input_files"] = paths
    else:
        found["input"] = paths[0] if paths else None
    return found


def write_stage_meta(
    settings,
    output: str | os.PathLike,
    inputs: Iterable,
    flags: dict | None = None,
    not_applied: dict | None = None,
    **changes,
) -> None:
    """Write `.magpie/<output name>.meta.json` for a stage that has no journal (concat,
    gen_dis, filter), so that the funnel and the card can follow the run's chain; `flags`
    are the causes its summary line counted that its records do not show (concat's
    incomplete turns left out), kept for the funnel. Such a stage reruns whole every
    time; nothing reads this file to skip it."""
    meta = output_meta(stage_settings(settings, inputs, **changes))
    if flags is not None:
        meta["flags"] = {str(k): int(v) for k, v in flags.items()}
    if not_applied:
        meta["not_applied"] = {str(k): str(v) for k, v in not_applied.items()}
    write_json(meta_path(output), meta)


def after_stage(settings, output: str | os.PathLike, not_applied: dict | None = None) -> None:
    """What gen_dis and filter do at their end: record their meta file (with, for filter,
    the rules `not_applied` and why) and bring the card of the ShareGPT export they
    descend from up to date (nothing when none)."""
    write_stage_meta(settings, output, [settings.input_file], not_applied=not_applied)
    export = _upstream_export(Path(output))
    if export is not None:
        update_card(export, [output])


def update_card(export: str | os.PathLike, later: Iterable[str | os.PathLike] = ()) -> None:
    """`write_card`, a failure only warned of: the stage's own output is made and sound,
    and a card that cannot be written (an upstream file since removed or spoilt, a full
    disk) must not turn a finished stage into a failed one."""
    try:
        for card in write_card(export, later):
            print(f"[card] wrote {card}")
    except Exception as e:  # noqa: BLE001 - any failure here: warned of, the stage stands
        log.warning("%s: dataset card not brought up to date (%s)", export, e)


def _inputs(settings: dict) -> list[Path]:
    given = settings.get("input_files")
    if given is None:
        given = [settings["input"]] if settings.get("input") else []
    return [Path(p) for p in given]


def _upstream_export(output: Path) -> Path | None:
    """The concat output this output was made from, followed through the meta files."""
    todo, seen = [output], set()
    while todo:
        path = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        settings = meta_settings(path)
        if settings.get("stage") == "concat":
            return path.resolve()
        todo.extend(_inputs(settings))
    return None


def _chain(outputs: Iterable[Path]) -> list[Path]:
    """The outputs and every output upstream of them that exists (the files the funnel
    of their run counts: the run's chain only, not every file in its folder)."""
    found: list[Path] = []
    todo = [Path(p).resolve() for p in outputs]
    while todo:
        path = todo.pop(0)
        if path in found or not path.exists():
            continue
        found.append(path)
        todo.extend(p.resolve() for p in _inputs(meta_settings(path)))
    return found


# ------------------------------------------------------------------ the card
def size_category(n: int) -> str:
    """Hugging Face's size category of a dataset of n records."""
    for bound, label in SIZE_CATEGORIES:
        if n < bound:
            return label
    return "n>1T"


def _languages(path: Path) -> tuple[int, list[str]]:
    """The records of a file and the ISO codes of their `language` field (lowercased,
    most common first); one streaming pass."""
    codes: Counter = Counter()
    n = 0
    for record in iter_records(path, allow_empty=True):
        n += 1
        code = record.get("language")
        if isinstance(code, str) and code.strip():
            codes[code.strip().lower()] += 1
    return n, [code for code, _ in codes.most_common()]


def _public(settings: dict) -> dict:
    """Settings fit for a public card: no secret, none of the bookkeeping keys."""
    return {k: v for k, v in settings.items() if k not in NOT_FLAGS and not _secret(k)}


def _secret(key: str) -> bool:
    """A key naming a secret: one of SECRET_WORDS as its whole name or its last words
    (`token`, `hf_token`, `api_key`), not a word inside another (`max_tokens`)."""
    name = key.lower()
    return any(name == w or name.endswith("_" + w) for w in SECRET_WORDS)


def _command(settings: dict) -> str:
    """The stage as a command line with the settings its meta file keeps (those at the
    stage's default, and paths other than outputs' names, left out)."""
    stage = settings.get("stage", "?")
    words = [f"magpie-{str(stage).replace('_', '-')}"]
    if settings.get("mission"):
        words.append(f"--tag_mission {settings['mission']}")
    defaults = _defaults(str(stage))
    for key, value in _public(settings).items():
        if value is None or value == [] or value == "" or defaults.get(key, ...) == value:
            continue
        if key in HIDDEN:
            continue
        plain = isinstance(value, str | bool | int | float)
        shown = str(value) if plain else json.dumps(value, ensure_ascii=False)
        if key in PATH_KEYS:
            shown = Path(shown).name
        words.append(f"--{key} {_quoted(shown)}")
    return " ".join(words)


def _defaults(stage: str) -> dict:
    """A stage's flags at their defaults (as JSON values), to leave them off a command."""
    cls = Settings.by_name.get(stage)
    if cls is None:
        return {}
    found = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            found[f.name] = json.loads(json.dumps(f.default, default=str))
        elif f.default_factory is not dataclasses.MISSING:
            found[f.name] = json.loads(json.dumps(f.default_factory(), default=str))
    return found


def _quoted(text: str) -> str:
    """A word as bash reads it back: bare, in single quotes, or as $'...' with escapes
    where it holds a line break or a tab (a pre-query template)."""
    if text and all(c.isalnum() or c in "-_./:,=+" for c in text):
        return text
    if "\n" in text or "\t" in text or "\r" in text:
        escaped = text.replace("\\", "\\\\").replace("'", "\\'")
        escaped = escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
        return f"$'{escaped}'"
    return "'" + text.replace("'", "'\\''") + "'"


def _recipe(folder: Path) -> Path | None:
    """The recipe of a run: recipe.yaml in the export's folder or the folder above it
    (a run's output_dir is often a subfolder of where its recipe lives)."""
    for place in (folder, folder.parent):
        for name in RECIPE_NAMES:
            if (place / name).is_file():
                return place / name
    return None


def _relative(path: Path, folder: Path) -> str | None:
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return None


def card_text(
    export: str | os.PathLike,
    later: Iterable[str | os.PathLike] = (),
    data_files: str | None = None,
    facts: tuple | None = None,
) -> str:
    """The dataset card (README.md text) of a ShareGPT export: its data files are
    `data_files` (a path or glob relative to the card; default the export's name), and
    the funnel counts the export's chain and the `later` outputs made from it. `facts`
    is what `_facts` read, when the caller has it already."""
    from huggingface_hub import DatasetCard, DatasetCardData

    export = Path(export).resolve()
    settings = meta_settings(export)
    n, languages, rows = facts or _facts(export, later)
    configs = [
        {
            "config_name": "default",
            "data_files": [{"split": "train", "path": data_files or export.name}],
        }
    ]
    if data_files is None:  # the filtered set beside the export: a config of its own
        filtered = [
            _relative(Path(r["file"]), export.parent) for r in rows if r["stage"] == "filter"
        ]
        filtered = [where for where in filtered if where]
        if filtered:  # the last filter run of the chain
            split = [{"split": "train", "path": filtered[-1]}]
            configs.append({"config_name": "filtered", "data_files": split})
    data = DatasetCardData(
        language=languages or None,
        license=settings.get("license") or None,
        task_categories=["text-generation"],
        size_categories=[size_category(n)],
        tags=["synthetic", "magpie"],
        pretty_name=settings.get("id_prefix") or export.stem,
        configs=configs,
    )
    body = _body(export, n, languages, rows)
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{MARK}\n\n{body}"))


def _facts(export: Path, later: Iterable[str | os.PathLike]) -> tuple:
    """What a card says that is read from records: the export's records and languages,
    and the funnel of its chain (one streaming pass over each output)."""
    n, languages = _languages(export)
    return n, languages, funnel(_chain([export, *map(Path, later)]))


def _body(export: Path, n: int, languages: list[str], rows: list[dict]) -> str:
    """The card's text below its header."""
    metas = {row["file"]: meta_settings(Path(row["file"])) for row in rows}
    lines = [
        f"# {export.stem}",
        "",
        f"Synthetic conversations made with [Magpie](https://arxiv.org/abs/2406.08464): an "
        f"aligned chat model is given only the start of its chat template and writes a user "
        f"instruction, then answers it. {n} records in ShareGPT format (`conversations`: "
        f"`from` system | human | gpt, `value`), with the tags of the run.",
        "",
        "## How it was made",
        "",
    ]
    recipe = _recipe(export.parent)
    if recipe is not None:
        lines += [f"The recipe (`magpie run {recipe.name}`):", "", "```yaml"]
        lines += [recipe.read_text(encoding="utf-8").rstrip(), "```", ""]
    lines += ["The stages, in order, with their settings:", "", "```bash"]
    lines += [_command(metas[row["file"]] or {"stage": row["stage"]}) for row in rows]
    lines += ["```", "", "## Models", ""]
    models = _models(rows, metas)
    lines += [f"- {stage}: `{model}`" for stage, model in models] or ["- not recorded"]
    lines += ["", "## Funnel", "", "| stage | file | records in | records out | flagged |"]
    lines += ["|---|---|---:|---:|---|"]
    for row in rows:
        flags = ", ".join(f"{k} {v}" for k, v in row["flags"].items()) or "none"
        if row["rejected"]:
            rules = ", ".join(f"{k} {v}" for k, v in row["rejected"].items())
            flags = f"{flags}; rejected by rule: {rules}"
        shown_in = "" if row["records_in"] is None else row["records_in"]
        lines.append(
            f"| {_cell(row['stage'])} | `{_cell(Path(row['file']).name)}` | {shown_in} | "
            f"{row['records_out']} | {_cell(flags)} |"
        )
    lines += ["", "## Filters", ""]
    if not any(row["stage"] == "filter" for row in rows):
        lines.append("No filter was run on this export yet.")
    for row in rows:
        if row["stage"] != "filter":
            continue
        settings = metas[row["file"]]
        skipped = read_meta(Path(row["file"])).get("not_applied") or {}
        rules = {k: v for k, v in _filter_rules(settings).items() if k not in skipped}
        lines.append(
            f"- `{_cell(Path(row['file']).name)}`: `{json.dumps(rules, ensure_ascii=False)}`"
        )
        lines += [f"  - {rule} not applied: {why}" for rule, why in skipped.items()]
    if languages:
        lines += ["", f"Languages found: {', '.join(languages)}."]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a cause read from records may hold `|` or a
    line break)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _filter_rules(settings: dict) -> dict:
    """The rules a filter run applied, with their values: its preset with its flags put
    over it (as magpie.stages.filter reads them); the flags as given when the preset
    cannot be read any more."""
    from magpie.filters import load_filter_config

    files = ("input_file", "config", "output_file", "rejected_file")
    given = {k: v for k, v in _public(settings).items() if k not in files}
    try:
        cfg = load_filter_config(settings.get("config"), **given)
    except (InputError, TypeError, OSError):
        return {k: v for k, v in given.items() if v is not None}
    rules = {"config": settings.get("config")} if settings.get("config") else {}
    rules.update((rule, getattr(cfg, rule)) for rule in cfg.active())
    return json.loads(json.dumps(rules, default=str))


def _models(rows: list[dict], metas: dict) -> list[tuple[str, str]]:
    """(stage, model) for every model named in the stages' settings, once each."""
    seen: list[tuple[str, str]] = []
    for row in rows:
        settings = metas.get(row["file"]) or {}
        for key in MODEL_KEYS:
            value = settings.get(key)
            if key == "sentence_model" and row["stage"] == "gen_dis" and not value:
                from magpie.embeddings import DEFAULT_SENTENCE_MODEL

                value = DEFAULT_SENTENCE_MODEL  # "" is the embedded default
            if value and (row["stage"], str(value)) not in seen:
                seen.append((row["stage"], str(value)))
    return seen


def write_card(export: str | os.PathLike, later: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Write (or rewrite) README.md beside the export, and in its Parquet folder when
    concat wrote one; return the cards written. A README.md that magpie did not write
    (no `MARK`: the user's own) is left as it is, with a warning."""
    export = Path(export).resolve()
    facts = _facts(export, list(later))
    places = [(export.parent / CARD_NAME, None)]
    parquet_dir = meta_settings(export).get("parquet_dir")
    if parquet_dir and Path(parquet_dir).is_dir():
        places.append((Path(parquet_dir) / CARD_NAME, f"{DATA_DIR}/train-*"))
    written = []
    for card, data_files in places:
        if card.exists() and MARK not in card.read_text(encoding="utf-8", errors="replace"):
            log.warning("%s: not a card magpie wrote; left as it is (no dataset card)", card)
            continue
        write_text(card, card_text(export, data_files=data_files, facts=facts))
        written.append(card)
    return written


# ------------------------------------------------------------------ Parquet
