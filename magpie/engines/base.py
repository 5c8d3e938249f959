"""The one interface every back end implements.

A stage builds prompts (raw text, already templated, or token ids), a `SamplingParams`,
and asks the engine for completions. Engines never apply a chat template themselves:
the pre-query template is raw text that must reach the model untouched (no second BOS).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from magpie.records import InputError

Prompt = str | list[int]
LogitsProcessorName = Literal["de_markdown", "flaming_tokens"]


@dataclass
class SamplingParams:
    """What to sample. Mirrors the subset of vLLM's SamplingParams that Magpie needs."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 2048
    repetition_penalty: float = 1.0
    # OpenAI's penalties on tokens already in the output (not the prompt), in [-2, 2].
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    # Base seed of a call without per-prompt seeds (prompt i, sample j: seed + i * n + j).
    # Stages pass per-prompt `seeds` to `Engine.stream` instead (see `item_seeds`).
    seed: int | None = None
    # First-token logits processors of the original Magpie (applied on every engine).
    logits_processor: LogitsProcessorName | None = None
    # Constrained decoding to a JSON schema (tagging); engines without support ignore it.
    json_schema: dict | None = None
    # End a row that loops (magpie.engines.repetition) with finish_reason "repetitive".
    stop_repetition: bool = True

    def __post_init__(self) -> None:
        """Refuse settings no engine can honour, when a stage builds its params (before any
        model loads), with the flag to change; vLLM would fail a whole call on them."""

        problems = []
        if self.n < 1:
            problems.append(f"n must be at least 1, not {self.n}")
        if not math.isfinite(self.temperature) or not 0 <= self.temperature <= 2:
            problems.append(f"temperature must be in [0, 2], not {self.temperature}")
        elif self.temperature == 0 and self.n > 1:
            problems.append(
                f"{self.n} samples at temperature 0 would be {self.n} copies of one greedy "
                "answer: give a temperature above 0"
            )
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], not {self.top_p}")
        if self.max_tokens < 1:
            problems.append(f"max_tokens must be at least 1, not {self.max_tokens}")
        for name in ("frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            if not (math.isfinite(value) and -2 <= value <= 2):
                problems.append(f"{name} must be in [-2, 2], not {value}")
        if not self.repetition_penalty > 0:
            problems.append(f"repetition_penalty must be above 0, not {self.repetition_penalty}")
        if problems:
            raise InputError("; ".join(problems))
        self.stop = [s for s in self.stop if s]  # an empty stop string would match anywhere


@dataclass
class Completion:
    """One sampled continuation.

    `finish_reason` is "stop" (a stop string or stop id ended it), "length" (it hit
    max_tokens), "repetitive" (it looped and was stopped: `magpie.engines.repetition`;
    the text keeps the repeated block once) or "rejected" (the prompt was not sent:
    empty, or too long for the model's context). `stop_reason` names what stopped it: the stop string, the stop token
    id, None for "length", or the problem ("empty_prompt", "prompt_too_long") for
    "rejected".
    """

    text: str
    finish_reason: Literal["stop", "length", "repetitive", "rejected"]
    stop_reason: str | int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Engine(Protocol):
    """A text-generation back end.

    `name` is "hf", "vllm" or "openai"; `model_path` is what the user asked for;
    `tokenizer` is a transformers tokenizer for the model (used for chat templates,
    profiles and token counts).
    """

    name: str
    model_path: str
    tokenizer: object

    def stream(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> Iterator[tuple[int, list[Completion]]]:
        """Yield `(prompt_index, n completions)` as prompts finish, in any order.

        Randomness is keyed by what is generated, never by position in a call: sample j
        of prompt i draws from the seed `seeds[i] + j` alone (see `item_seeds`), so its
        text does not depend on batch size, call boundaries or a kill and resume. How:
        - hf: one torch.Generator per row, seeded `seeds[i] + j`, drawing one uniform
          number per decoding step for that row only (inverse-CDF sampling).
        - vllm: request i carries `seed=seeds[i]`; vLLM seeds its n children seed + j.
        - openai: the same per request (`seed` field); where a server ignores `n`, sample
          j is its own request with `seeds[i] + j`. Prompts are batched into one request
          only without seeds (one request carries one seed).
        Without `seeds`, `params.seed` (if set) gives prompt i the seed
        `params.seed + i * n`, which repeats across calls: stages always pass `seeds`.
        Greedy decoding (temperature 0) draws nothing.
        """
        ...

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        """All completions, in prompt order (see `stream`)."""
        ...


# Stage seeds lie in [0, 2**31): items of a stage (k * n + j < 2**32 of them) then stay
# below 2**63, the range every engine's seed field takes.
STAGE_SEED_RANGE = 2**31


def stage_seed(run_seed: int, stage: str) -> int:
    """The base seed of one stage (or step of a stage) of a run, in [0, 2**31).

    A hash of (run seed, stage name), so that two stages, or the user and assistant turns
    of one conversation step, never replay one random stream.
    """
    digest = hashlib.blake2b(f"{int(run_seed)}/{stage}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % STAGE_SEED_RANGE


def item_seeds(
    run_seed: int | None, stage: str, keys: Iterable[int], n: int = 1
) -> list[int] | None:
    """Per-prompt seeds for `Engine.stream`: item k of `stage` gets `stage_seed + k * n`,
    and its sample j (0 <= j < n) draws from `stage_seed + k * n + j`.

    `keys` are the items' stable numbers (record index, round number), not positions in
    the call, so a record's text is the same whichever call or worker makes it; within a
    stage no two samples share a seed, by construction. None when the run has no seed
    (then every sample is drawn fresh).
    """
    if run_seed is None:
        return None
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    base = stage_seed(run_seed, stage)
    return [base + int(k) * n for k in keys]


def resolve_seeds(
    count: int, params: SamplingParams, seeds: Sequence[int] | None
) -> list[int] | None:
    """The seed of sample 0 of each of `count` prompts: `seeds`, else `params.seed + i * n`
    (a call-local fallback for direct callers), else None (unseeded)."""
    if seeds is not None:
        if len(seeds) != count:
            raise ValueError(f"{len(seeds)} seeds for {count} prompts")
        return [int(s) for s in seeds]
    if params.seed is None:
        return None
    return [params.seed + i * params.n for i in range(count)]


def prompt_problem(prompt_ids: Sequence[int], max_model_len: int | None) -> str | None:
    """Why a prompt cannot be generated from: "empty_prompt", "prompt_too_long" (no room
    left for one new token in `max_model_len`), or None when it is fine."""
    if not prompt_ids:
        return "empty_prompt"
    if max_model_len is not None and len(prompt_ids) >= max_model_len:
        return "prompt_too_long"
    return None


def rejected(problem: str, prompt_tokens: int = 0) -> Completion:
    """The completion of a prompt that was not sent (see `prompt_problem`)."""
    return Completion("", "rejected", problem, prompt_tokens, 0)


def collect(stream: Iterator[tuple[int, list[Completion]]], count: int) -> list[list[Completion]]:
    """Gather a `stream` back into prompt order (the default `generate`)."""
    out: list[list[Completion] | None] = [None] * count
    for index, completions in stream:
        out[index] = completions
    missing = [i for i, c in enumerate(out) if c is None]
    if missing:
        raise RuntimeError(f"engine returned no completion for prompts {missing[:10]}")
    return out  # type: ignore[return-value]


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """Cut `text` at the EARLIEST occurrence of any stop string.

    The original's hf path cut at every stop in list order, so the last stop in the list
    won, not the first in the text; this returns the earliest match and which stop it was.
    """
    best, which = len(text), None
    for s in stops:
        if not s:
            continue
        i = text.find(s)
        if i != -1 and i < best:
            best, which = i, s
    return text[:best], which
