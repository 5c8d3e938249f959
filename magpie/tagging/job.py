"""Running missions over files: checks first, then one journaled pass per mission.

Everything that can be refused (unknown mission, missing file, bad records file, no
model for a mission that needs one, a model without a chat template, a checkpoint that
is not a reward model) is refused before any weights load. Each mission journals every
tagged record as it is made (`magpie.records.Journal`), so a killed run resumes where it
stopped; a mission whose output is complete is skipped on a rerun.

A mission is a `TagJob` (magpie.executor.Step) run by the executor the engine flags ask
for: here, or on Ray replicas of its model (`--executor ray`), with the same records.
Each kind of model (tagger LLM, guard, reward model, language detector) has one loader:
the tagger is loaded once for all the LLM missions of a group and released before a
guard or reward model is loaded.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from magpie.conversation import Conversation, conversation_of
from magpie.engines import EngineOptions, pick_engine
from magpie.executor import LocalExecutor, Made, Step
from magpie.models import canonical_name
from magpie.prompt_text import count_special_text, flag_special_text
from magpie.records import (
    InputError,
    Journal,
    check_finished_output,
    count_records,
    iter_records,
    overwriting,
)
from magpie.stage import Summary
from magpie.tagging import CANNOT_JUDGE, LLM_MISSIONS, expand, output_file
from magpie.tagging.guard import GuardTagger, guard_settings
from magpie.tagging.language import SETTINGS as LANGUAGE_SETTINGS
from magpie.tagging.language import LanguageTagger
from magpie.tagging.llm import LLMTagger, constrained_for, tagger_settings
from magpie.tagging.schemas import FIELDS

log = logging.getLogger("magpie")


class TagSummary(Summary):
    """The stage summary plus how many records got the mission's labels."""

    def __init__(self, mission: str, records_in: int, judge: str):
        super().__init__(f"unitag {mission}", records_in)
        self.judge = judge
        self.tagged = 0

    def line(self) -> str:
        failed = sum(self.flags.values())
        return f"{super().line()}; tagged {self.tagged}, failed {failed}; judge: {self.judge}"


def annotate(record: dict, mission: str, fields: dict, reason: str | None) -> dict:
    """The record with the mission's fields set (null where not tagged) and its reason
    in `tag_errors[mission]` (removed when the mission succeeds)."""
    out = {k: v for k, v in record.items() if k != "tag_errors"}
    for name in FIELDS[mission]:
        out[name] = fields.get(name)
    errors = {k: v for k, v in (record.get("tag_errors") or {}).items() if k != mission}
    if reason:
        errors[mission] = reason
    if errors:
        out["tag_errors"] = errors
    return out


def _view(mission: str, conv: Conversation) -> tuple[Conversation | None, str | None]:
    """What the mission reads of a conversation, or the reason it cannot tag it."""
    if conv.has_response:  # judge what can be exported: the complete exchanges
        return conv.complete(), None
    if mission in ("sample_quality", "reward"):
        return None, "no_response: the record has no complete exchange to judge"
    return conv, None


def checked_count(path: str | Path) -> int:
    """How many records `path` holds, every one of them read once (so a bad file fails
    here, with read_records' messages) and none kept."""
    return sum(1 for _ in iter_records(path))


class TagJob(Step):
    """One mission over one file: input checked and journal opened before any model loads.
    Items are (record index, record), read from the input as the executor asks for them,
    so no process holds the file; the model is a tagger (LLMTagger, GuardTagger,
    RewardScorer, LanguageTagger). `count` is the input's number of records when the
    caller already knows it (it read the file through); else the file is read through here.

    `settings` (the tagger's part of the journal fingerprint) and `judge` are given, not
    asked of a loaded tagger: the run decides them where it starts, and each tagger that
    makes entries, here or on a Ray replica, must report the same settings."""

    unit = "rec"

    def __init__(
        self,
        mission: str,
        input_file: Path,
        output: Path,
        settings: dict,
        judge: str,
        count: int | None = None,
    ):
        self.mission, self.stage = mission, f"unitag {mission}"
        self.needs_gpu = mission != "language"  # lingua runs on CPU
        self.input_file = Path(input_file)
        self.count = checked_count(input_file) if count is None else count
        self.output, self.settings, self.judge = Path(output), settings, judge
        self.journal = Journal(
            output,
            {
                "stage": "unitag",
                "mission": mission,
                "input": str(Path(input_file).resolve()),
                "records": self.count,
                **settings,
            },
        )

    cannot_judge: str | None = None  # set: every record gets null fields and this reason

    def todo(self) -> Iterator[tuple[int, dict]]:
        return self.journal.pending(self.input_file)

    def progress(self) -> tuple[int, int]:
        return self.count, len(self.journal.done)

    def summary(self) -> TagSummary:
        return TagSummary(self.mission, self.count, self.judge)

    def view(self, record: dict) -> tuple[Conversation | None, str | None]:
        """What the mission reads of a record, or the reason it gets no label."""
        if self.cannot_judge:
            return None, self.cannot_judge
        conv, reason = conversation_of(record)
        if conv is not None:
            conv, reason = _view(self.mission, conv)
        return conv, reason

    def make(self, tagger, items: list[tuple[int, dict]]) -> Iterator[Made]:
        """Records without anything to judge first (their reason, no model call), then
        the tagger's answers; a record's tokens are those the tagger spent up to it."""
        mission, records, todo = self.mission, {}, []
        for i, record in items:
            conv, reason = self.view(record)
            if conv is None:
                yield i, annotate(record, mission, {}, reason), 0
            else:
                records[i] = record
                todo.append((i, conv))
        if not todo:
            return
        if tagger.settings() != self.settings:
            raise InputError(
                f"unitag {mission}: the tagger loaded here has settings {tagger.settings()}, "
                f"the run's journal was opened for {self.settings} (a worker with other "
                "packages than the driver, e.g. xgrammar?)"
            )
        before = tagger.tokens
        tokenizer = getattr(tagger, "tokenizer", None) or getattr(
            getattr(tagger, "engine", None), "tokenizer", None
        )
        for i, fields, reason in tagger.tag(mission, todo):
            spent, before = tagger.tokens - before, tagger.tokens
            record = flag_special_text(annotate(records[i], mission, fields, reason), tokenizer)
            yield i, record, spent

    def finish(self, summary: TagSummary) -> TagSummary:
        """Write the output from the journal, counting the summary as records pass."""

        def counted(records: Iterator[dict]) -> Iterator[dict]:
            for record in records:
                reason = (record.get("tag_errors") or {}).get(self.mission)
                if reason:
                    summary.flags[reason.split(":")[0]] += 1
                else:
                    summary.tagged += 1
                count_special_text(summary.flags, (record,))
                summary.records_out += 1
                yield record

        self.journal.finish(counted(self.journal.in_order(self.count)))
        return summary

    def execute(self, executor, load: Callable) -> TagSummary:
        """Run on `executor` with the tagger `load` makes; a complete output is reported
        and left as it is."""
        if self.journal.complete:  # made before with these settings from this input
            summary = self.summary()
            summary.records_out = summary.tagged = count_records(self.output)
            print(
                f"[unitag {self.mission}] {self.output} is already complete (same settings and input)"
            )
            return summary
        return executor.run(self, load)


def tag_file(mission: str, tagger, input_file: Path, output: Path) -> TagSummary:
    """Tag every record of `input_file` for one mission into `output`, resumably, with an
    already loaded tagger, in this process."""
    job = TagJob(mission, input_file, output, tagger.settings(), tagger.judge)
    return job.execute(LocalExecutor(), lambda: tagger)


@dataclass
class TagOptions:
    """Everything `run` needs besides the missions and the file (the CLI's options); the
    engine and executor flags are the shared ones (magpie.engines.EngineOptions): also
    the reward model's device, dtype, batch size (rows) and context (max_model_len)."""

    model_path: str = ""
    guard_model_path: str | None = None
    reward_model_path: str | None = None
    save_as: str = "json"
    max_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    overwrite: bool = False  # replace outputs made with other settings or input
    engine_options: EngineOptions = field(default_factory=EngineOptions)


def _sampling(opts: TagOptions) -> dict:
    """The tagger LLM's sampling settings (also part of its journal fingerprint)."""
    return {
        "temperature": opts.temperature,
        "top_p": opts.top_p,
        "repetition_penalty": opts.repetition_penalty,
        "max_tokens": opts.max_tokens,
        "seed": opts.seed,
    }


def _needs(mission: str, opts: TagOptions) -> str:
    """Which model a mission runs on: tagger, guard, reward or language."""
    if mission in LLM_MISSIONS or (mission == "safety" and not opts.guard_model_path):
        return "tagger"
    return {"safety": "guard", "reward": "reward", "language": "language"}[mission]


def _settings(kind: str, opts: TagOptions) -> dict:
    """A kind's part of the journal fingerprint, known without loading a thing (the
    reward model's context limit is not: `_judge` reads it from its config)."""

    if kind == "tagger":
        engine = pick_engine(opts.engine_options.engine)
        return tagger_settings(
            canonical_name(opts.model_path), constrained_for(engine), **_sampling(opts)
        )
    if kind == "guard":
        return guard_settings(opts.guard_model_path)
    if kind == "reward":
        return {"reward_model": opts.reward_model_path}
    return dict(LANGUAGE_SETTINGS)


def _known_settings(mission: str, src: Path, opts: TagOptions) -> tuple[dict, list[str]]:
    """The part of a mission's journal fingerprint known from the options alone, and its
    keys (for check_finished_output before any model loads)."""
    known = {"stage": "unitag", "mission": mission, "input": str(src.resolve())}
    known.update(_settings(_needs(mission, opts), opts))
    return known, list(known)


# Loaders: one per kind of model, module-level functions bound with functools.partial so
# that they travel to Ray replicas; the executor keeps one model per loader object.


def load_llm_tagger(engine_options: EngineOptions, model_path: str, sampling: dict, tokenizer=None):

    engine = engine_options.load(model_path, seed=sampling["seed"], tokenizer=tokenizer)
    return LLMTagger(engine, canonical_name(model_path), **sampling)


def load_guard(engine_options: EngineOptions, model_path: str, seed: int | None, tokenizer=None):

    engine = engine_options.load(model_path, seed=seed, tokenizer=tokenizer)
    return GuardTagger(engine, model_path)


def load_reward(engine_options: EngineOptions, model_path: str):
    from magpie.tagging.reward import RewardScorer

    return RewardScorer(
        model_path,
        device=engine_options.device,
        dtype=engine_options.dtype,
        batch_size=engine_options.batch_size,
        max_length=engine_options.max_model_len,
        trust_remote_code=engine_options.trust_remote_code,
    )


def load_language():

    return LanguageTagger()


@dataclass
class Judge:
    """A kind of model as the run sees it before loading it: its journal settings, the
    judge's name for the summary, and the loader (one object: the executor's key)."""

    settings: dict
    name: str
    load: Callable


def _judge(kind: str, opts: TagOptions, local: bool) -> Judge:
    """Checks what can be refused before any weights load (chat templates, a reward
    model's head) and makes the kind's loader. A local run hands the tokenizer loaded
    for the check to the engine; Ray replicas load their own."""

    eo = opts.engine_options
    if kind in ("tagger", "guard"):
        path = opts.model_path if kind == "tagger" else opts.guard_model_path
        what = "tagger model" if kind == "tagger" else "guard model"
        tokenizer = eo.tokenizer(path)
        if not getattr(tokenizer, "chat_template", None):
            raise InputError(f"{what} {path or '(embedded default)'} has no chat template")
        tokenizer = tokenizer if local else None
        if kind == "tagger":
            load = functools.partial(load_llm_tagger, eo, path, _sampling(opts), tokenizer)
            return Judge(_settings(kind, opts), canonical_name(path), load)
        load = functools.partial(load_guard, eo, path, opts.seed, tokenizer)
        return Judge(_settings(kind, opts), path, load)
    if kind == "reward":
        from magpie.tagging.reward import reward_settings

        path = opts.reward_model_path
        settings = reward_settings(path, eo.max_model_len, eo.trust_remote_code)
        return Judge(settings, path, functools.partial(load_reward, eo, path))
    return Judge(_settings(kind, opts), "lingua", functools.partial(load_language))


def _free_memory() -> None:
    """After dropping a model: collect it, so that the next one fits (GPU memory)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def cannot_judge(mission: str, opts: TagOptions) -> str | None:
    """Why the run's tagger cannot be trusted with `mission` (magpie.tagging.CANNOT_JUDGE),
    or None."""

    if _needs(mission, opts) != "tagger":
        return None
    return CANNOT_JUDGE.get((canonical_name(opts.model_path), mission))


def run(tag_mission: str, input_file: str | Path, opts: TagOptions) -> list[Path]:
    """Run a mission or a group over `input_file`; returns the files written, in order.
    Every mission runs on one executor (--executor local or ray); each kind of model is
    loaded once and released when no later mission needs it."""

    missions = expand(tag_mission)
    count = checked_count(input_file)  # bad input fails before any model loads
    if "reward" in missions and not opts.reward_model_path:
        if tag_mission == "reward":
            raise InputError(
                "the reward mission needs --reward_model_path (a sequence-classification "
                "reward model, e.g. sfairXC/FsfairX-LLaMA3-RM-v0.1)"
            )
        print("[unitag reward] skipped: no --reward_model_path given")
        missions.remove("reward")
    # The engine is named here, once: the fingerprint's `constrained` follows from it,
    # and every replica loads that engine (not one it would pick for itself).
    eo = opts.engine_options
    opts = dataclasses.replace(
        opts, engine_options=dataclasses.replace(eo, engine=pick_engine(eo.engine))
    )
    plan, current, chain_done = [], Path(input_file), True
    for mission in missions:
        out = output_file(current, mission, opts.save_as)
        # Known before any model loads: a later mission's input is only final once the
        # missions before it are (TagJob's journal checks everything again).
        known, keys = _known_settings(mission, current, opts)
        done = chain_done and check_finished_output(out, known, opts.overwrite, keys=keys)
        chain_done = done
        plan.append((mission, current, out, done))
        current = out
    executor = opts.engine_options.make_executor()
    try:
        judges = {}
        for kind in dict.fromkeys(_needs(m, opts) for m, _, _, done in plan if not done):
            judges[kind] = _judge(kind, opts, local=executor.name == "local")
        for n, (mission, src, out, done) in enumerate(plan):
            if done:
                print(f"[unitag {mission}] {out} is already complete; skipped")
                continue
            judge = judges[_needs(mission, opts)]
            # A later mission's input is an earlier one's output: counted, not checked.
            size = count if src == Path(input_file) else count_records(src)
            with overwriting(opts.overwrite):
                job = TagJob(mission, src, out, judge.settings, judge.name, size)
                job.cannot_judge = cannot_judge(mission, opts)
                if job.cannot_judge:  # no model call: every record gets the reason
                    log.info("[unitag %s] %s", mission, job.cannot_judge)
                    summary = job.execute(LocalExecutor(), lambda: None)
                else:
                    summary = job.execute(executor, judge.load)
            print(summary.line())
            print(f"[unitag {mission}] wrote {out}")
            later = {_needs(m, opts) for m, _, _, d in plan[n + 1 :] if not d}
            unused = [k for k in judges if k not in later]
            for k in unused:
                executor.release(judges.pop(k).load)
            if unused:
                _free_memory()
    finally:
        executor.close()
    return [out for _, _, out, _ in plan]
