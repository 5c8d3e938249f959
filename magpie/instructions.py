"""Instruction extraction: the model, given only the pre-query template, writes a user turn.

Every record is kept (exactly `total_prompts` of them), and the ones that are not good
instructions are flagged rather than dropped or silently counted as good:

- `instruction_finish_reason`: "end_of_turn" (the model closed its user turn: a stop id or
  turn-boundary string), "newline" (cut at the first newline by early stopping),
  "length" (hit max_tokens without stopping) or "repetitive" (stopped looping).
- `instruction_flag`: null for a usable instruction, "empty" for an empty one, "unfinished"
  for one that hit max_tokens, "repetitive" for one that looped. Later stages skip flagged records (and say so); the filter
  stage drops them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

from magpie.engines.base import Completion, Engine, SamplingParams, item_seeds
from magpie.executor import Made, Step
from magpie.profiles import Profile
from magpie.records import InputError, Journal
from magpie.sanitize import instruction_post_process
from magpie.stage import Summary

log = logging.getLogger("magpie")


def instruction_file_name(model_path: str, total_prompts: int, timestamp: int) -> str:
    """The original's name: Magpie_<model basename>_<total>_<timestamp>_ins.json."""
    return f"Magpie_{Path(model_path.rstrip('/')).name}_{total_prompts}_{timestamp}_ins.json"


def finish_reason(c: Completion, newline_stop: bool, role_words=()) -> str:
    """How an instruction ended: "length", "newline", "role_word" (cut at one of the
    profile's `stop_tokens_assistant`, as the original cut: a model running on into the
    assistant's turn, or a legitimate use of the word, which users can filter on) or
    "end_of_turn"."""
    if c.finish_reason in ("length", "repetitive"):
        return c.finish_reason
    if newline_stop and c.stop_reason == "\n":
        return "newline"
    if c.stop_reason in role_words:
        return "role_word"
    return "end_of_turn"


def instruction_flag(text: str, reason: str) -> str | None:
    if not text:
        return "empty"
    if reason == "length":
        return "unfinished"
    if reason == "repetitive":
        return "repetitive"
    return None


class InstructionJob(Step):
    """One instruction-extraction run: validated and journal opened before any model loads.
    Items are rounds: round r makes records r*n .. r*n+n-1 from one prompt with n samples."""

    stage, unit = "gen_ins", "ins"

    def __init__(
        self,
        profile: Profile,
        output_path: str | Path,
        *,
        model_name: str,
        total_prompts: int,
        n: int = 200,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 2048,
        early_stopping: bool = True,
        system_prompt: bool | str = False,
        control_tasks: str | None = None,
        sanitize: bool = False,
        logits_processor: str | None = None,
        shuffle: bool = True,
        seed: int = 0,
    ):
        if total_prompts < 1 or n < 1:
            raise InputError("--total_prompts and --n must be at least 1")
        if isinstance(system_prompt, str) and system_prompt:
            self.template = profile.with_system(system_prompt)
        else:
            self.template = profile.template(control_tasks, bool(system_prompt))
        self.model_name, self.total, self.n = model_name, total_prompts, n
        self.entries_per_item = n  # an item is a round of n instructions
        self.sanitize, self.early_stopping, self.shuffle, self.seed = (
            sanitize,
            early_stopping,
            shuffle,
            seed,
        )
        self.role_words = tuple(profile.stop_tokens_assistant)
        self.params = SamplingParams(
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop=[*profile.stop_tokens, *profile.stop_tokens_assistant]
            + (["\n"] if early_stopping else []),
            stop_token_ids=list(profile.stop_token_ids),
            seed=seed,
            logits_processor=logits_processor,  # type: ignore[arg-type]
        )
        self.journal = Journal(
            output_path,
            {
                "stage": "gen_ins",
                "model": model_name,
                "pre_query_template": self.template,
                "total_prompts": total_prompts,
                "n": n,
                "temperature": temperature,
                "top_p": top_p,
                "max_tokens": max_tokens,
                "early_stopping": early_stopping,
                "sanitize": sanitize,
                "logits_processor": logits_processor,
                "seed": seed,
            },
        )

    def _ids(self, r: int) -> range:
        """The record ids of round r (n of them, fewer in a short last round)."""
        return range(r * self.n, min((r + 1) * self.n, self.total))

    def todo(self) -> Iterator[int]:
        """Rounds with a record not yet journaled, found as the executor asks for them."""
        done = self.journal.done
        rounds = math.ceil(self.total / self.n)
        return (r for r in range(rounds) if any(i not in done for i in self._ids(r)))

    def progress(self) -> tuple[int, int]:
        return self.total, len(self.journal.done)

    def summary(self) -> Summary:
        return Summary("gen_ins", 0)

    def make(self, engine: Engine, items: list[int]) -> Iterator[Made]:
        """The records of these rounds (all n of each; the executor keeps the missing)."""
        n = self.n
        # Full rounds share one call with n samples each; a short last round gets its own n.
        groups: dict[int, list[int]] = {}
        for r in items:
            groups.setdefault(len(self._ids(r)), []).append(r)
        for size, group_rounds in groups.items():
            params = dataclasses.replace(self.params, n=size)
            prompts = [self.template] * len(group_rounds)
            # Round r's sample j draws from stage_seed + r * n + j = stage_seed + its id,
            # also in a short last round: no two records share a seed.
            seeds = item_seeds(self.seed, "gen_ins", group_rounds, n)
            for k, completions in engine.stream(prompts, params, seeds):
                r = group_rounds[k]
                if self.shuffle:  # keyed by round: the same order after a resume
                    random.Random(f"{self.seed}/gen_ins/shuffle/{r}").shuffle(completions)
                for i, c in zip(self._ids(r), completions, strict=True):
                    yield i, self._record(i, c), c.completion_tokens

    def finish(self, summary: Summary) -> Summary:
        """Write exactly `total_prompts` records, streamed from the journal in order, their
        flags counted as they pass."""

        def counted(records: Iterator[dict]) -> Iterator[dict]:
            for r in records:
                if r["instruction_flag"]:
                    summary.flags[r["instruction_flag"]] += 1
                yield r

        self.journal.finish(counted(self.journal.in_order(self.total)))
        summary.records_out = self.total
        return summary

    def _record(self, i: int, c: Completion) -> dict:
        raw = c.text.strip()
        reason = finish_reason(c, self.early_stopping, self.role_words)
        record: dict = {"id": i, "pre_query_template": self.template}
        if self.sanitize:
            text, class_num = instruction_post_process(raw, self.model_name)
            record.update(
                raw_instruction=raw, instruction=text, instruction_sanitize_class_num=class_num
            )
        else:
            record["instruction"] = raw
        record.update(
            instruction_finish_reason=reason,
            instruction_flag=instruction_flag(record["instruction"], reason),
            response=None,
            created=int(time.time()),
            gen_input_configs={
                "temperature": self.params.temperature,
                "top_p": self.params.top_p,
                "input_generator": self.model_name,
                "seed": self.seed,
            },
            gen_response_configs=None,
        )
        return record
