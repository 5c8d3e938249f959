"""Running missions over files: checks first, then one journaled pass per mission.

Everything that can be refused (unknown mission, missing file, bad records file, no
model for a mission that needs one, a model without a chat template, a checkpoint that
is not a reward model) is refused before any weights load. Each mission journals every
tagged record as it is made (`magpie.records.Journal`), so a killed run resumes where it
stopped; a mission whose output is complete is skipped on a rerun. The tagger LLM is
loaded once for all the LLM missions of a group and released before a guard or reward
model is loaded.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from magpie.conversation import Conversation, conversation_of
from magpie.records import InputError, Journal, check_finished_output, overwriting, read_records
from magpie.stage import Summary
from magpie.tagging import LLM_MISSIONS, expand, output_file
from magpie.tagging.schemas import FIELDS


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


def tag_file(
    mission: str, tagger, input_file: Path, output: Path, records: list[dict] | None = None
) -> TagSummary:
    """Tag every record of `input_file` (already read: `records`) for one mission into
    `output`, resumably."""
    if records is None:
        records = read_records(input_file)
    journal = Journal(
        output,
        {
            "stage": "unitag",
            "mission": mission,
            "input": str(Path(input_file).resolve()),
            "records": len(records),
            **tagger.settings(),
        },
    )
    summary = TagSummary(mission, len(records), tagger.judge)
    if journal.complete:  # made before with these settings from this input
        summary.records_out = summary.tagged = len(read_records(output))
        print(f"[unitag {mission}] {output} is already complete (same settings and input)")
        return summary
    summary.resumed = len(journal.done)
    tokens_before = tagger.tokens
    items: list[tuple[int, Conversation]] = []
    for i, record in enumerate(records):
        if i in journal.done:
            continue
        conv, reason = conversation_of(record)
        if conv is not None:
            conv, reason = _view(mission, conv)
        if conv is None:
            journal.append(i, annotate(record, mission, {}, reason))
        else:
            items.append((i, conv))
    bar = tqdm(total=len(records), initial=len(records) - len(items), desc=mission, unit="rec")
    try:
        for i, fields, reason in tagger.tag(mission, items):
            journal.append(i, annotate(records[i], mission, fields, reason))
            bar.update(1)
    finally:
        bar.close()
        journal.close()
    out = [journal.done[i] for i in range(len(records))]
    for record in out:
        reason = (record.get("tag_errors") or {}).get(mission)
        if reason:
            summary.flags[reason.split(":")[0]] += 1
        else:
            summary.tagged += 1
    summary.records_out = len(out)
    summary.tokens = tagger.tokens - tokens_before
    journal.finish(out)
    return summary


@dataclass
class TagOptions:
    """Everything `run` needs besides the missions and the file (the CLI's options)."""

    model_path: str = ""
    guard_model_path: str | None = None
    reward_model_path: str | None = None
    save_as: str = "json"
    engine: str | None = None
    batch_size: int = 64
    max_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    dtype: str = "bfloat16"
    device: str | None = None
    max_model_len: int = 4096
    trust_remote_code: bool = False
    overwrite: bool = False  # replace outputs made with other settings or input
    engine_options: dict = field(default_factory=dict)  # vLLM / server options


def _sampling(opts: TagOptions) -> dict:
    """The tagger LLM's sampling settings (also part of its journal fingerprint)."""
    return {
        "temperature": opts.temperature,
        "top_p": opts.top_p,
        "repetition_penalty": opts.repetition_penalty,
        "max_tokens": opts.max_tokens,
        "seed": opts.seed,
    }


def _known_settings(mission: str, src: Path, opts: TagOptions) -> tuple[dict, list[str]]:
    """The part of a mission's journal fingerprint known from the options alone, and its
    keys (for check_finished_output before any model loads)."""
    from magpie.models import canonical_name

    known = {"stage": "unitag", "mission": mission, "input": str(src.resolve())}
    kind = _needs(mission, opts)
    if kind == "tagger":
        known.update(model=canonical_name(opts.model_path), **_sampling(opts))
    elif kind == "reward":
        known["reward_model"] = opts.reward_model_path
    return known, list(known)


def _needs(mission: str, opts: TagOptions) -> str:
    """Which model a mission runs on: tagger, guard, reward or language."""
    if mission in LLM_MISSIONS or (mission == "safety" and not opts.guard_model_path):
        return "tagger"
    return {"safety": "guard", "reward": "reward", "language": "language"}[mission]


def _chat_tokenizer(model_path: str, what: str, opts: TagOptions):
    from magpie.engines import load_tokenizer_for

    tok = load_tokenizer_for(
        opts.engine, model_path, opts.trust_remote_code, **_server_options(opts)
    )
    if not getattr(tok, "chat_template", None):
        raise InputError(f"{what} {model_path or '(embedded default)'} has no chat template")
    return tok


def _server_options(opts: TagOptions) -> dict:
    keys = ("base_url", "api_key_env")
    return {k: v for k, v in opts.engine_options.items() if k in keys}


def _load_engine(model_path: str, tokenizer, opts: TagOptions):
    from magpie.engines import load_engine

    return load_engine(
        opts.engine,
        model_path,
        dtype=opts.dtype,
        device=opts.device,
        batch_size=opts.batch_size,
        seed=opts.seed,
        trust_remote_code=opts.trust_remote_code,
        max_model_len=opts.max_model_len,
        tokenizer=tokenizer,
        **opts.engine_options,
    )


def _free_memory() -> None:
    """After dropping a model: collect it, so that the next one fits (GPU memory)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def run(tag_mission: str, input_file: str | Path, opts: TagOptions) -> list[Path]:
    """Run a mission or a group over `input_file`; returns the files written, in order."""
    missions = expand(tag_mission)
    first_records = read_records(input_file)  # bad input fails before any model loads
    if "reward" in missions and not opts.reward_model_path:
        if tag_mission == "reward":
            raise InputError(
                "the reward mission needs --reward_model_path (a sequence-classification "
                "reward model, e.g. sfairXC/FsfairX-LLaMA3-RM-v0.1)"
            )
        print("[unitag reward] skipped: no --reward_model_path given")
        missions.remove("reward")
    plan, current, chain_done = [], Path(input_file), True
    for mission in missions:
        out = output_file(current, mission, opts.save_as)
        # Known before any model loads: a later mission's input is only final once the
        # missions before it are (tag_file's journal checks everything again).
        known, keys = _known_settings(mission, current, opts)
        done = chain_done and check_finished_output(out, known, opts.overwrite, keys=keys)
        chain_done = done
        plan.append((mission, current, out, done))
        current = out
    needed = {_needs(m, opts) for m, _, _, done in plan if not done}
    tokenizers = {}
    if "tagger" in needed:
        tokenizers["tagger"] = _chat_tokenizer(opts.model_path, "tagger model", opts)
    if "guard" in needed:
        tokenizers["guard"] = _chat_tokenizer(opts.guard_model_path, "guard model", opts)
    if "reward" in needed:
        from magpie.tagging.reward import check_reward_model

        check_reward_model(opts.reward_model_path, opts.trust_remote_code)

    loaded: dict[str, object] = {}
    for n, (mission, src, out, done) in enumerate(plan):
        if done:
            print(f"[unitag {mission}] {out} is already complete; skipped")
            continue
        kind = _needs(mission, opts)
        if kind not in loaded:
            loaded[kind] = _load_tagger(kind, tokenizers.get(kind), opts)
        records, first_records = (first_records if src == Path(input_file) else None), None
        with overwriting(opts.overwrite):
            summary = tag_file(mission, loaded[kind], src, out, records)
        print(summary.line())
        print(f"[unitag {mission}] wrote {out}")
        later = {_needs(m, opts) for m, _, _, d in plan[n + 1 :] if not d}
        unused = [k for k in loaded if k not in later]
        for k in unused:
            del loaded[k]
        if unused:
            _free_memory()
    return [out for _, _, out, _ in plan]


def _load_tagger(kind: str, tokenizer, opts: TagOptions):
    from magpie.models import canonical_name

    if kind == "tagger":
        from magpie.tagging.llm import LLMTagger

        engine = _load_engine(opts.model_path, tokenizer, opts)
        return LLMTagger(engine, canonical_name(opts.model_path), **_sampling(opts))
    if kind == "guard":
        from magpie.tagging.guard import GuardTagger

        engine = _load_engine(opts.guard_model_path, tokenizer, opts)
        return GuardTagger(engine, opts.guard_model_path)
    if kind == "reward":
        from magpie.tagging.reward import RewardScorer

        return RewardScorer(
            opts.reward_model_path,
            device=opts.device,
            dtype=opts.dtype,
            batch_size=opts.batch_size,
            max_length=opts.max_model_len,
            trust_remote_code=opts.trust_remote_code,
        )
    from magpie.tagging.language import LanguageTagger

    return LanguageTagger()
