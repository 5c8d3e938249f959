"""Language mission: lingua on the first user turn, ISO 639-1 upper case ("EN", "ZH").

Why batches: lingua detects a list in parallel (Rust threads); the original looped over
records one by one. The detector (all languages, high accuracy, as the original) is built
once per process; its language models load on first use (a few seconds).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache

from magpie.tagging.inputs import Conversation

BATCH = 4096


@lru_cache(maxsize=1)
def _detector():
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_all_languages().build()


def detect_languages(texts: Sequence[str]) -> list[str | None]:
    """ISO 639-1 codes, upper case; None for an empty or undetectable text."""
    out: list[str | None] = [None] * len(texts)
    todo = [i for i, t in enumerate(texts) if t and t.strip()]
    if todo:
        found = _detector().detect_languages_in_parallel_of([texts[i] for i in todo])
        for i, lang in zip(todo, found, strict=True):
            out[i] = lang.iso_code_639_1.name if lang is not None else None
    return out


class LanguageTagger:
    """The language mission (no model to load)."""

    tokens = 0
    judge = "lingua"

    def settings(self) -> dict:
        return {"detector": "lingua, all languages"}

    def tag(
        self, mission: str, items: Sequence[tuple[int, Conversation]]
    ) -> Iterator[tuple[int, dict, str | None]]:
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            for (key, _), code in zip(
                chunk, detect_languages([c.first_user for _, c in chunk]), strict=True
            ):
                yield key, {"language": code}, None if code else "undetectable"
