"""One pipeline: a recipe runs stages in order, each reading the previous one's output.

A recipe is YAML (or a dict): shared keys, then the ordered list of stages whose keys are
exactly that stage's flags (magpie.settings):

    seed: 4
    output_dir: data/run1
    stages:
      - gen_ins: {total_prompts: 1000, n: 200, top_p: 0.9}
      - gen_res: {max_tokens: 2048}
      - unitag: {tag_mission: all}

Shared keys (`SHARED_KEYS`, and every engine/executor flag of EngineOptions) go to each
stage that has such a flag, unless the stage sets its own. A stage whose input is not
given reads the previous stage's output; the first stage writes into `output_dir`. Each
stage skips itself when its output is already complete with the same settings and input,
and resumes from its journal when it was killed, so rerunning a killed recipe ends with
the records of an uninterrupted run. Model recipes ship in magpie/configs/recipes/ and
are named without their .yaml (`magpie run llama3.1-8b`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from magpie.engines import EngineOptions
from magpie.models import canonical_name
from magpie.records import InputError, write_json
from magpie.resources import RECIPES_DIR
from magpie.settings import ENGINE_FLAGS, Settings
from magpie.stages.concat import Concat
from magpie.stages.filter import Filter
from magpie.stages.gen_dis import GenDis
from magpie.stages.gen_ins import GenIns
from magpie.stages.gen_mt import GenConv, GenMt
from magpie.stages.gen_po_pairs import GenPoPairs
from magpie.stages.gen_po_rewards import GenPoRewards
from magpie.stages.gen_res import GenPoMultiRes, GenRes
from magpie.stages.report import Report
from magpie.stages.run_task import RunTask
from magpie.stages.unitag import Unitag

log = logging.getLogger("magpie")

STAGES: dict[str, type[Settings]] = {
    cls.stage: cls
    for cls in (
        GenIns,
        GenRes,
        GenMt,
        GenConv,
        Unitag,
        Concat,
        GenDis,
        Filter,
        GenPoMultiRes,
        GenPoRewards,
        GenPoPairs,
        RunTask,
        Report,
    )
}

# Keys a recipe gives once for every stage (besides the engine flags of EngineOptions).
# `model` is short for `model_path`; `data_dir` is where the original's job folders go.
SHARED_KEYS = {
    "model_path",
    "model",
    "seed",
    "timestamp",
    "output_dir",
    "data_dir",
    "overwrite",
    "save_as",
}
DEFAULT_RECIPE = "default"


@dataclasses.dataclass
class Planned:
    """One stage of a recipe, its settings resolved (shared keys applied)."""

    name: str
    settings: Settings
    engine: EngineOptions
    given: dict  # the keys the recipe gave this stage itself


def recipe_path(name: str | Path) -> Path:
    """A recipe file: a path, or the name of a shipped recipe (magpie/configs/recipes).
    InputError when neither exists."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise InputError(f"{name}: no such recipe file, nor a shipped recipe (shipped: {names})")


def load_recipe(recipe: str | Path | Mapping | None = None) -> dict:
    """The recipe as a dict: from a mapping, a YAML file or a shipped recipe's name;
    None is the embedded default job (gen_ins then gen_res on SmolLM2-135M-Instruct)."""
    if isinstance(recipe, Mapping):
        return json.loads(json.dumps(dict(recipe)))  # a deep copy of plain values
    path = recipe_path(DEFAULT_RECIPE if recipe is None else recipe)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a recipe is a mapping with a `stages` list")
    return data


def plan(recipe: str | Path | Mapping | None = None, **overrides: Any) -> list[Planned]:
    """The stages of a recipe with their settings resolved, before anything runs.

    `overrides` replace shared keys (`seed=4`) or a stage's keys (`gen_ins__top_p=0.9`,
    or on the command line `--gen_ins.top_p 0.9`: every stage of that name). InputError
    naming the stage and key for anything a stage does not have."""
    data = load_recipe(recipe)
    stages = data.pop("stages", None)
    if not isinstance(stages, list) or not stages:
        raise InputError("recipe: `stages` must be a non-empty list of {stage: {flags}}")
    for key, value in overrides.items():
        stage, _, flag = key.partition("__")
        if flag:
            entries = [e for e in stages if isinstance(e, dict) and stage in e]
            if not entries:
                raise InputError(f"--{stage}.{flag}: the recipe has no {stage} stage")
            for entry in entries:
                entry[stage] = {**(entry[stage] or {}), flag: value}
        else:
            data[key] = value
    if "model" in data:
        data.setdefault("model_path", data.pop("model"))
    unknown = sorted(set(data) - SHARED_KEYS - set(ENGINE_FLAGS))
    if unknown:
        raise InputError(
            f"recipe: unknown shared key {', '.join(map(repr, unknown))} (shared keys: "
            f"{', '.join(sorted(SHARED_KEYS - {'model'}))} and the engine flags)"
        )
    planned = []
    for i, entry in enumerate(stages, 1):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise InputError(f"recipe: stage {i} must be {{name: {{flags}}}}, not {entry!r}")
        ((name, given),) = entry.items()
        if name not in STAGES:
            raise InputError(f"recipe: stage {i}: no stage {name!r} (stages: {', '.join(STAGES)})")
        given = dict(given or {})
        cls = STAGES[name]
        values = {k: v for k, v in data.items() if k in cls.keys() and k not in given}
        settings, engine = cls.from_mapping({**values, **given}, where=f"recipe: stage {i}")
        planned.append(Planned(name, settings, engine, given))
    _place_outputs(planned, data)
    return planned


def _place_outputs(planned: list[Planned], shared: dict) -> None:
    """Put the first stage's output in the run's folder: `output_dir`, else the
    original's job folder <data_dir>/<model>_topp<p>_temp<t>_<timestamp>."""
    first = planned[0].settings
    if not hasattr(first, "output_folder") or "output_folder" in planned[0].given:
        return
    if shared.get("output_dir"):
        first.output_folder = str(shared["output_dir"])
        return
    first.output_folder = str(shared.get("data_dir") or "data")
    if first.stage != "gen_ins":
        return
    if first.timestamp is None:
        first.timestamp = int(time.time())
    sampling = first.sampling()
    model = Path(canonical_name(first.model_path)).name
    first.job_name = (
        f"{model}_topp{sampling['top_p']:g}_temp{sampling['temperature']:g}_{first.timestamp}"
    )


def _run_state(planned: list[Planned], shared_dir: str | None) -> None:
    """Fix what a run picks for itself (the timestamp, hence the seed) so that rerunning
    the same recipe into the same output_dir finds, and resumes, the same files."""
    first = planned[0].settings
    if not shared_dir or getattr(first, "timestamp", 0) is not None:
        return
    state_file = Path(shared_dir) / ".magpie" / "run.json"
    if state_file.is_file():
        state = json.loads(state_file.read_text(encoding="utf-8"))
    else:
        state = {"timestamp": int(time.time())}
        write_json(state_file, state)
    first.timestamp = state["timestamp"]


def run(recipe: str | Path | Mapping | None = None, **overrides: Any) -> dict[str, Path]:
    """Run a recipe (a YAML path, a shipped recipe's name, or a dict; None: the embedded
    default job) and return each stage's output path by stage name (a second stage of
    the same name is `name_2`, ...). Overrides as in `plan`. Raises InputError on a bad
    recipe before any model loads; stages raise InputError on bad input."""
    data = load_recipe(recipe)
    planned = plan(data, **overrides)
    _run_state(planned, {**data, **overrides}.get("output_dir"))
    outputs: dict[str, Path] = {}
    previous: Path | None = None
    for i, step in enumerate(planned, 1):
        field = step.settings.input_field
        if previous is not None and field and field not in step.given:
            value = [str(previous)] if field == "input_files" else str(previous)
            setattr(step.settings, field, value)
        log.info("[run] stage %d/%d: %s", i, len(planned), step.name)
        previous = Path(step.settings.run(step.engine))
        key, n = step.name, 2
        while key in outputs:
            key, n = f"{step.name}_{n}", n + 1
        outputs[key] = previous
    for name, path in outputs.items():
        print(f"[run] {name}: {path}")
    return outputs
