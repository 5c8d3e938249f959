"""Safety with a Llama-Guard-family model, through the guard's own chat template.

The guard's template turns the conversation into its classification prompt (Llama Guard
2 judges the last turn, the assistant's answer when there is one, against S1..S11) and
the model answers "safe" or "unsafe" and a line of category codes. The answer is stored
in that form as `llama_guard_2`; anything else is not stored (null and the reason).
The tokenizer is loaded once, with the engine (the original reloaded it every batch).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from magpie.chat_template import chat_prompt
from magpie.conversation import Conversation
from magpie.engines.base import Engine, SamplingParams
from magpie.tagging.llm import turn_end_ids
from magpie.tagging.schemas import GUARD_VERDICT

MAX_TOKENS = 24  # "unsafe\nS1,S2,S3" and an end-of-turn token fit easily


def parse_verdict(text: str) -> str:
    """'safe' or 'unsafe\\nS<n>[,S<m>...]' from a guard's answer; ValueError otherwise."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].lower() == "safe":
        return "safe"
    if len(lines) >= 2 and lines[0].lower() == "unsafe":
        codes = re.sub(r"\s+", "", lines[1]).upper()
        verdict = f"unsafe\n{codes}"
        if GUARD_VERDICT.match(verdict):
            return verdict
    snippet = " ".join(text.split())[:60]
    raise ValueError(f"guard_output: not 'safe' or 'unsafe\\nS<n>' ({snippet!r})")


def guard_settings(model_name: str) -> dict:
    """What changes a guard's verdicts: part of the safety mission's journal fingerprint."""
    return {"guard_model": model_name, "max_tokens": MAX_TOKENS}


class GuardTagger:
    """The safety mission on a guard model's engine."""

    def __init__(self, engine: Engine, model_name: str):
        self.engine = engine
        self.model_name = model_name
        self.judge = model_name
        self.tokens = 0
        self.stop_token_ids = turn_end_ids(engine.tokenizer)

    def settings(self) -> dict:
        return guard_settings(self.model_name)

    def tag(
        self, mission: str, items: Sequence[tuple[int, Conversation]]
    ) -> Iterator[tuple[int, dict, str | None]]:
        judged = {"safety_generator": self.model_name}
        prompts = [chat_prompt(self.engine.tokenizer, conv.messages()) for _, conv in items]
        params = SamplingParams(
            temperature=0.0, max_tokens=MAX_TOKENS, stop_token_ids=self.stop_token_ids
        )
        for k, (c,) in self.engine.stream(prompts, params):
            self.tokens += c.completion_tokens
            try:
                yield items[k][0], {"llama_guard_2": parse_verdict(c.text), **judged}, None
            except ValueError as e:
                yield items[k][0], judged, str(e)
