"""The one interface every back end implements.

A stage builds prompts (raw text, already templated, or token ids), a `SamplingParams`,
and asks the engine for completions. Engines never apply a chat template themselves:
the pre-query template is raw text that must reach the model untouched (no second BOS).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

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
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    seed: int | None = None
    # First-token logits processors of the original Magpie (applied on every engine).
    logits_processor: LogitsProcessorName | None = None
    # Constrained decoding to a JSON schema (tagging); engines without support ignore it.
    json_schema: dict | None = None


@dataclass
class Completion:
    """One sampled continuation.

    `finish_reason` is "stop" (a stop string or stop id ended it) or "length" (it hit
    max_tokens). `stop_reason` names what stopped it: the stop string, the stop token id,
    or None for "length".
    """

    text: str
    finish_reason: Literal["stop", "length"]
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
        self, prompts: Sequence[Prompt], params: SamplingParams
    ) -> Iterator[tuple[int, list[Completion]]]:
        """Yield `(prompt_index, n completions)` as prompts finish, in any order."""
        ...

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """All completions, in prompt order."""
        ...


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
