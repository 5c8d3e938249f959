"""Language mission: lingua on the first user turn, ISO 639-1 upper case ("EN", "ZH").

Lingua reads only the natural-language words of the text (whitespace-separated tokens
made of letters, punctuation around them aside): code such as `print(sum(range(10)))`
is no language, and lingua would otherwise name one at random (Xhosa for that one). A
text with too little natural language left (fewer than MIN_WORDS words or MIN_LETTERS
letters; a CJK character counts as a word of CJK_LETTERS letters) gets `language: null`
and the reason TOO_LITTLE in `tag_errors`.

Why batches: lingua detects a list in parallel (Rust threads); the original looped over
records one by one. The detector (all languages, high accuracy, as the original) is built
once per process; its language models load on first use (a few seconds).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from functools import lru_cache

from magpie.tagging.inputs import Conversation

BATCH = 4096
MIN_WORDS, MIN_LETTERS, CJK_LETTERS = 2, 8, 3
TOO_LITTLE = "too little natural language"
# A few words give lingua little to go on: "Write a haiku about autumn." comes out Swahili
# at 17% confidence (English 12%). When it is that unsure of a text of at most
# SHORT_WORDS words, the likeliest of the languages common in instruction data is taken.
SHORT_WORDS, UNSURE = 8, 0.25
COMMON = frozenset(
    "EN ZH ES FR DE PT RU JA KO IT NL PL TR AR VI ID HI UK CS SV FA HE TH EL".split()
)
UNDETECTABLE = "undetectable"
_INNER = "'’-"


@lru_cache(maxsize=1)
def _detector():
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_all_languages().build()


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return (
        0x3040 <= o <= 0x30FF  # kana
        or 0x3400 <= o <= 0x9FFF  # CJK ideographs
        or 0xAC00 <= o <= 0xD7AF  # Hangul
        or 0x0E00 <= o <= 0x0E7F  # Thai (no spaces between words either)
        or 0xF900 <= o <= 0xFAFF
    )


def _strip_punctuation(token: str) -> str:
    start, end = 0, len(token)
    while start < end and unicodedata.category(token[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(token[end - 1]).startswith("P"):
        end -= 1
    return token[start:end]


def natural_text(text: str) -> tuple[str, int, int]:
    """(the natural-language words of `text` joined by spaces, how many words, how many
    letters): a word is a whitespace-separated token of letters (inner ' and - allowed)
    once the punctuation around it is stripped; a CJK or Thai character counts as one word
    of CJK_LETTERS letters."""
    words, n_words, n_letters = [], 0, 0
    for token in text.split():
        core = _strip_punctuation(token)
        if not core or not core[0].isalpha() or not core[-1].isalpha():
            continue
        if not all(c.isalpha() or c in _INNER for c in core):
            continue
        words.append(core)
        cjk = sum(1 for c in core if _is_cjk(c))
        n_words += cjk + (1 if cjk < len(core) else 0)
        n_letters += cjk * CJK_LETTERS + sum(1 for c in core if c.isalpha() and not _is_cjk(c))
    return " ".join(words), n_words, n_letters


def detect_language(texts: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """(ISO 639-1 code upper case, None) per text, or (None, reason): TOO_LITTLE for a
    text with too little natural language (code, numbers, a lone word), UNDETECTABLE when
    lingua names no language."""
    out: list[tuple[str | None, str | None]] = [(None, TOO_LITTLE)] * len(texts)
    todo, natural = [], []
    for i, t in enumerate(texts):
        words, n_words, n_letters = natural_text(t or "")
        if n_words >= MIN_WORDS and n_letters >= MIN_LETTERS:
            todo.append(i)
            natural.append(words)
    if todo:
        found = _detector().detect_languages_in_parallel_of(natural)
        for i, lang in zip(todo, found, strict=True):
            out[i] = (lang.iso_code_639_1.name, None) if lang is not None else (None, UNDETECTABLE)
        short = [k for k, words in enumerate(natural) if len(words.split()) <= SHORT_WORDS]
        if short:
            values = _detector().compute_language_confidence_values_in_parallel(
                [natural[k] for k in short]
            )
            for k, ranked in zip(short, values, strict=True):
                code = _unsure_short(ranked)
                if code is not None:
                    out[todo[k]] = (code, None)
    return out


def _unsure_short(ranked) -> str | None:
    """For a short text lingua is unsure of (best confidence below UNSURE), the most
    likely of the COMMON languages, else None (lingua's own answer stands)."""
    if not ranked or ranked[0].value >= UNSURE:
        return None
    for c in ranked:
        code = c.language.iso_code_639_1.name
        if code in COMMON:
            return code
    return None


def detect_languages(texts: Sequence[str]) -> list[str | None]:
    """ISO 639-1 codes, upper case; None for a text with too little natural language or
    an undetectable one (`detect_language` says which)."""
    return [code for code, _ in detect_language(texts)]


SETTINGS = {"detector": "lingua, all languages"}  # the language mission's fingerprint


class LanguageTagger:
    """The language mission (no model to load)."""

    tokens = 0
    judge = "lingua"

    def settings(self) -> dict:
        return dict(SETTINGS)

    def tag(
        self, mission: str, items: Sequence[tuple[int, Conversation]]
    ) -> Iterator[tuple[int, dict, str | None]]:
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            for (key, _), (code, reason) in zip(
                chunk, detect_language([c.first_user for _, c in chunk]), strict=True
            ):
                yield key, {"language": code}, reason
