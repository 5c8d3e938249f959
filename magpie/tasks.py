"""Task files (fms-dgt style): a YAML naming a data builder and its settings.

Common fields: task_name, created_by, task_description, data_builder. Builders:

- `magpie_tag_transform`: tag an existing dataset (`seed_datastore: {type: default,
  data_path: FILE}`, records with input/output or a `messages` list — messages win),
  `mission: all | magpie`, then optional near-duplicate marking (`dedup: true`) and
  filtering (`filter:` a mapping of filter rules or a preset file).
- `instructlab/skills`: grow question/answer data from `seed_examples` (magpie.skills),
  then tag (quality, sample_quality, difficulty; a mission the tagger cannot be trusted
  with stores null and the reason, as unitag), mark near-duplicates and filter (by default
  input quality good/excellent, sample quality 4-5, duplicates removed; the seed examples
  are tagged too, and a label rule that rejects one of them is widened to the labels from
  the lowest a seed got upward, said in the summary's `filter_fitted_to_seeds`).

Model fields: model_path, seed, max_tokens, temperature, and any engine or executor flag
of the stage CLIs (magpie.engines.EngineOptions: engine, dtype, batch_size, device,
executor, num_replicas...). A flag given on run_task's command line (other than its
default) overrides the task file's; the batch size defaults to 32 for task files. Both
builders run their model stages on that executor (`--executor ray`: Ray replicas of the
model, the same records as local): a skills task's generation calls and tagging share one
loaded model (one `LLMTagger`, loaded once here or once per replica).

Output goes to `<output_root>/<task_name>/`; every rejected item is kept in a file with
the step and reason that rejected it, and a summary says generated, kept and rejected per
step. Relative paths in a task file are read from the task file's folder.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
from pathlib import Path

import yaml

from magpie.dedup import run_distance
from magpie.engines import EXECUTOR_FLAGS, EngineOptions, pick_engine
from magpie.executor import LocalExecutor
from magpie.filters import load_filter_config, run_filter
from magpie.labels import INPUT_QUALITY
from magpie.models import canonical_name
from magpie.profiles import get_profile
from magpie.records import (
    InputError,
    Journal,
    iter_records,
    overwriting,
    read_records,
    write_json,
    write_records,
)
from magpie.skills import Item, SkillsBuilder, item_record
from magpie.stage import json_type
from magpie.tagging import CANNOT_JUDGE
from magpie.tagging.job import TagJob, TagOptions, load_llm_tagger
from magpie.tagging.job import run as run_tagging
from magpie.tagging.llm import LLMTagger, constrained_for, tagger_settings

log = logging.getLogger("magpie")

COMMON = ("task_name", "created_by", "task_description", "data_builder")
ENGINE_FIELDS = tuple(f.name for f in dataclasses.fields(EngineOptions))
MODEL_FIELDS = ("model_path", "seed", "max_tokens", "temperature", *ENGINE_FIELDS)
TASK_ENGINE_DEFAULTS = {"batch_size": 32}  # task files' own default
BUILDERS = {
    "magpie_tag_transform": {
        "required": ("seed_datastore",),
        "optional": (
            "mission",
            "dedup",
            "filter",
            "guard_model_path",
            "reward_model_path",
            *MODEL_FIELDS,
        ),
    },
    "instructlab/skills": {
        "required": ("seed_examples",),
        "optional": (
            "num_icl_examples_per_prompt",
            "machine_batch_size",
            "num_questions_to_generate_per_prompt",
            "num_samples",
            "max_iterations",
            "prompt_templates_dir",
            "tag",
            "dedup",
            "filter",
            *MODEL_FIELDS,
        ),
    },
}
SKILLS_FILTER = {
    "input_quality": ["good", "excellent"],
    "sample_quality": [4, 5],
    "remove_duplicates": True,
}


def _resolve(task_file: Path, value: str) -> str:
    p = Path(value)
    if p.is_absolute() or p.exists():
        return str(p)
    return str(task_file.parent / p)


def load_task(path: str | Path) -> dict:
    """A validated task; errors name the file and the field."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: task file not found")
    try:
        task = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise InputError(f"{path}: malformed YAML ({e})") from None
    if not isinstance(task, dict):
        raise InputError(f"{path}: a task file is a mapping of fields")
    for name in COMMON:
        if not isinstance(task.get(name), str) or not task[name].strip():
            problem = "missing" if name not in task else "not a non-empty string"
            raise InputError(f"{path}: field '{name}' is {problem}")
    builder = BUILDERS.get(task["data_builder"])
    if builder is None:
        raise InputError(
            f"{path}: field 'data_builder': unknown builder "
            f"'{task['data_builder']}' (known: {', '.join(BUILDERS)})"
        )
    for name in builder["required"]:
        if name not in task:
            raise InputError(
                f"{path}: field '{name}' is missing (needed by {task['data_builder']})"
            )
    allowed = set(COMMON) | set(builder["required"]) | set(builder["optional"])
    for name in task:
        if name not in allowed:
            raise InputError(f"{path}: field '{name}' is unknown for {task['data_builder']}")
    temperature = task.get("temperature", 0.0)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or temperature < 0:
        raise InputError(f"{path}: field 'temperature' must be a number at least 0")
    if not all(c.isalnum() or c in "-_." for c in task["task_name"]):
        raise InputError(f"{path}: field 'task_name' must be letters, digits, '-', '_', '.'")
    task["_file"] = str(path)
    if task["data_builder"] == "magpie_tag_transform":
        store = task["seed_datastore"]
        if (
            not isinstance(store, dict)
            or store.get("type", "default") != "default"
            or not isinstance(store.get("data_path"), str)
        ):
            raise InputError(f"{path}: field 'seed_datastore' needs type: default and data_path")
        store["data_path"] = _resolve(path, store["data_path"])
        if task.get("mission", "magpie") not in ("all", "magpie"):
            raise InputError(f"{path}: field 'mission' must be all or magpie")
    else:
        seeds = task["seed_examples"]
        if not isinstance(seeds, list) or not seeds:
            raise InputError(f"{path}: field 'seed_examples' must be a non-empty list")
        for i, seed in enumerate(seeds):
            if not isinstance(seed, dict):
                raise InputError(f"{path}: field 'seed_examples[{i}]' must be a mapping")
            seed.setdefault("question", seed.pop("instruction", None))
            seed.setdefault("answer", seed.pop("response", None))
            for key in ("question", "answer"):
                if not isinstance(seed.get(key), str) or not seed[key].strip():
                    raise InputError(f"{path}: field 'seed_examples[{i}].{key}' is missing")
        if task.get("prompt_templates_dir"):
            task["prompt_templates_dir"] = _resolve(path, task["prompt_templates_dir"])
    if isinstance(task.get("filter"), str):
        task["filter"] = _resolve(path, task["filter"])
    return task


def _filter_config(spec):

    if spec is None or spec is False:
        return None
    if isinstance(spec, str):
        return load_filter_config(spec)
    if isinstance(spec, dict):
        return load_filter_config(None, **spec)
    raise InputError("field 'filter' must be a mapping of rules or a preset file")


def with_flags(task: dict, given: EngineOptions | None) -> dict:
    """The task with the command line's engine flags that differ from their defaults
    set in it (they override the task file's)."""
    if given is None:
        return task
    defaults, task = EngineOptions(), dict(task)
    for name in ENGINE_FIELDS:
        value = getattr(given, name)
        if value != getattr(defaults, name):
            if name in task and task[name] != value:
                log.info("note: --%s %s overrides the task's %s: %s", name, value, name, task[name])
            task[name] = value
    return task


def task_engine_options(task: dict) -> EngineOptions:
    """The task's engine and executor settings (the batch size defaults to 32 here)."""
    return EngineOptions(
        **{**TASK_ENGINE_DEFAULTS, **{k: task[k] for k in ENGINE_FIELDS if k in task}}
    )


def _tag_options(task: dict):

    return TagOptions(
        model_path=task.get("model_path", "") or "",
        guard_model_path=task.get("guard_model_path"),
        reward_model_path=task.get("reward_model_path"),
        save_as="jsonl",
        seed=task.get("seed", 0),
        max_tokens=task.get("max_tokens", 512),
        temperature=float(task.get("temperature", 0.0)),  # the tagger's; greedy by default
        engine_options=task_engine_options(task),
    )


def _post_process(task: dict, tagged: Path, out_dir: Path, summary: dict) -> Path:
    """Near-duplicate marking and filtering, as the task asks; returns the final file."""

    current = tagged
    if task.get("dedup"):
        current_out = out_dir / f"{tagged.stem}_distance.jsonl"
        run_distance(current, current_out, progress=False)
        current = current_out
    cfg = _filter_config(task.get("filter"))
    final = out_dir / "final_data.jsonl"
    if cfg is None:
        summary["kept"] = write_records(final, iter_records(current))
        return final
    report = run_filter(current, cfg, final, out_dir / "filter_rejected.jsonl")
    summary["filter"] = {
        "in": report.records_in,
        "kept": report.kept,
        "rejected_by_rule": dict(report.rejected),
    }
    summary["kept"] = report.kept
    return final


ID_FIELDS = ("id", "uuid", "conversation_id")


def with_ids(records: list[dict], task_name: str) -> list[dict]:
    """The records, each with an id: near-duplicate marking names a record's
    representative by id. A record without any id field gets one of the type the input's
    ids have, so the `id` column keeps one type (datasets/pyarrow load it): integer ids
    go on from the largest, string ids (or none) get "<task>_<index>". Input whose ids
    mix types gets every id as a string, said once."""
    types = {json_type(r["id"]) for r in records if "id" in r}
    integers = types == {"number"} and all(isinstance(r["id"], int) for r in records if "id" in r)
    if len(types) > 1 or (types == {"number"} and not integers):
        log.info(
            "note: the input's ids are %s; every id is written as a string",
            " and ".join(sorted(types)),
        )
        records = [{**r, "id": str(r["id"])} if "id" in r else r for r in records]
    used = {r["id"] for r in records if "id" in r}
    next_int = max(used, default=-1) + 1 if integers else None
    out = []
    for i, r in enumerate(records):
        if not any(k in r for k in ID_FIELDS):
            if next_int is not None:
                new_id, next_int = next_int, next_int + 1
            else:
                new_id = f"{task_name}_{i}"
                while new_id in used:
                    new_id += "_"
            used.add(new_id)
            r = {"id": new_id, **r}
        out.append(r)
    return out


def run_tag_transform(task: dict, out_dir: Path) -> dict:

    records = with_ids(read_records(task["seed_datastore"]["data_path"]), task["task_name"])
    source = out_dir / f"{task['task_name']}.jsonl"
    write_records(source, records)
    files = run_tagging(task.get("mission", "magpie"), source, _tag_options(task))
    summary = {"task": task["task_name"], "builder": task["data_builder"], "records": len(records)}
    # The first user turn is compared, read by magpie.conversation from any format
    # (input/output records' `input`, messages' first user message).
    _post_process(task, files[-1], out_dir, summary)
    return summary


# Keys that do not change the generated items.
POST_PROCESSING = ("created_by", "tag", "dedup", "filter", *EXECUTOR_FLAGS)


# The default filter's tag rules, in label order, and the mission that tags each.
FITTED_RULES = ("quality", "sample_quality")
_RULE_LABELS = {"input_quality": list(INPUT_QUALITY), "sample_quality": [1, 2, 3, 4, 5]}


def seed_records(task: dict) -> list[dict]:
    """The task's seed examples as records (as generated items are written)."""

    return [
        {
            **item_record(task["task_name"], i, Item(s["question"], s.get("context"), s["answer"])),
            "id": f"{task['task_name']}_seed_{i}",
        }
        for i, s in enumerate(task["seed_examples"])
    ]


def fit_to_seeds(rules: dict, tagged_seeds: list[dict]) -> tuple[dict, dict]:
    """The default filter's label rules widened, where they reject a seed example, to
    every label from the lowest one a seed got upward: the seeds are the task's own
    definition of a good item, so a rule that drops them measures the tagger, not the
    items (the embedded tagger calls every shipped seed question "average" and rates 3 of
    4 correct seed answers 2). Returns (rules, {rule: what changed and why})."""
    rules, fitted = dict(rules), {}
    for rule, order in _RULE_LABELS.items():
        allowed = rules.get(rule)
        labels = [r.get(rule) for r in tagged_seeds if r.get(rule) in order]
        if not allowed or not labels or all(label in allowed for label in labels):
            continue
        lowest = min(order.index(label) for label in labels)
        widened = [x for x in order if x in allowed or order.index(x) >= lowest]
        rejected = sum(label not in allowed for label in labels)
        fitted[rule] = {
            "was": list(allowed),
            "now": widened,
            "seeds": labels,
            "why": f"{allowed} rejects {rejected} of {len(labels)} seed examples on this "
            f"tagger (their labels: {labels}); widened to {widened}",
        }
        rules[rule] = widened
    return rules, fitted


def tagger_sampling(seed: int) -> dict:
    """The sampling of a skills task's tagger: LLMTagger's defaults (greedy), the task's
    seed (the settings the tagger's journal fingerprint holds)."""

    params = inspect.signature(LLMTagger.__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return {**defaults, "seed": seed}


def run_skills(task: dict, out_dir: Path) -> dict:
    """Generate a skills task's items, tag them, mark near-duplicates and filter. Every
    model call runs on the executor the engine flags ask for, with one model loader."""

    # The engine is named here, once: the prompts' form (JSON under a grammar or not)
    # follows from it, and every replica loads that engine.
    options = task_engine_options(task)
    options = dataclasses.replace(options, engine=pick_engine(options.engine))
    model_path = task.get("model_path", "") or ""
    tokenizer = options.tokenizer(model_path)
    profile = get_profile(canonical_name(model_path), tokenizer)
    executor = options.make_executor()
    # One loader object for the whole task (the executor keeps one model per loader): an
    # LLMTagger, whose engine makes the items and which tags them. Here it gets the
    # tokenizer loaded above; Ray replicas load their own.
    local = executor.name == "local"
    sampling = tagger_sampling(task.get("seed", 0))
    load = functools.partial(
        load_llm_tagger, options, model_path, sampling, tokenizer if local else None
    )
    try:
        return _run_skills(task, out_dir, options, tokenizer, profile, executor, load, sampling)
    finally:
        executor.close()


def _run_skills(task, out_dir, options, tokenizer, profile, executor, load, sampling) -> dict:

    model_path = task.get("model_path", "") or ""
    name = canonical_name(model_path)
    generated = out_dir / "generated.jsonl"
    done_file = out_dir / "generation_summary.json"  # written just before generated.jsonl
    made_by = {k: v for k, v in task.items() if k not in POST_PROCESSING}  # what makes items
    fingerprint = json.loads(json.dumps(made_by, default=str))
    done = read_records(done_file)[0] if done_file.exists() else {}
    if generated.exists() and done.get("fingerprint") == fingerprint:
        print(f"[run_task] {generated} is already complete; reusing it")
        n_generated, steps = done["generated"], done["steps"]
    else:
        builder = SkillsBuilder(
            None,
            profile,
            task,
            seed=task.get("seed", 0),
            temperature=task.get("temperature", 0.7),
            max_tokens=task.get("max_tokens", 512),
            model_name=name,
            tokenizer=tokenizer,
            constrained=constrained_for(options.engine),
            executor=executor,
            load=load,
        )
        # Every call's samples and every finished round: a killed run resumes where it was.
        journal = Journal(generated, fingerprint)
        items = builder.run(
            int(task.get("num_samples", 10)), int(task.get("max_iterations", 5)), journal
        )
        n_generated, steps = len(items), builder.steps()
        write_records(out_dir / "generation_rejected.jsonl", builder.rejected)
        done = {"fingerprint": fingerprint, "generated": n_generated, "steps": steps}
        write_records(done_file, [done])
        journal.finish(item_record(task["task_name"], i, it) for i, it in enumerate(items))
    summary = {
        "task": task["task_name"],
        "builder": task["data_builder"],
        "generated": n_generated,
        "steps": steps,
    }
    if not n_generated:
        write_records(out_dir / "final_data.jsonl", [])
        summary["kept"] = 0
        return summary
    current = generated
    if task.get("tag", True):
        settings = tagger_settings(name, constrained_for(options.engine), **sampling)

        def tag(source: Path, missions: tuple[str, ...]) -> Path:
            for mission in missions:
                out = out_dir / f"{source.stem}_{mission}.jsonl"
                job = TagJob(mission, source, out, settings, name)
                # As unitag: a mission the tagger cannot be trusted with gets null labels
                # and the reason (the embedded model's difficulty), not an untrusted label.
                job.cannot_judge = CANNOT_JUDGE.get((name, mission))
                if job.cannot_judge:  # no model call
                    print(job.execute(LocalExecutor(), lambda: None).line())
                else:
                    print(job.execute(executor, load).line())
                source = out
            return source

        current = tag(current, ("quality", "sample_quality", "difficulty"))
        if "filter" not in task:  # the default filter, read against the seeds' own tags
            seeds = out_dir / "seed_examples.jsonl"
            write_records(seeds, seed_records(task))
            tagged_seeds = read_records(tag(seeds, FITTED_RULES))
            rules, fitted = fit_to_seeds(SKILLS_FILTER, tagged_seeds)
            task = {**task, "filter": rules}
            if fitted:
                summary["filter_fitted_to_seeds"] = fitted
                for rule, how in fitted.items():
                    log.info("note: skills filter rule %s: %s", rule, how["why"])
    task = {"dedup": True, "filter": SKILLS_FILTER, **task}
    _post_process(task, current, out_dir, summary)
    return summary


def run_task(
    path: str | Path,
    output_root: str | Path = "data",
    overwrite: bool = False,
    engine_options: EngineOptions | None = None,
) -> dict:
    """Run one task file; returns (and writes) its summary. `overwrite` replaces outputs
    made with other settings (refused otherwise); `engine_options` are the command line's
    engine flags (see `with_flags`)."""
    task = with_flags(load_task(path), engine_options)
    out_dir = Path(output_root) / task["task_name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    with overwriting(overwrite):
        if task["data_builder"] == "magpie_tag_transform":
            summary = run_tag_transform(task, out_dir)
        else:
            summary = run_skills(task, out_dir)
    write_json(out_dir / "summary.json", summary)
    return summary
