"""Language mission: lingua on the first user turn, ISO 639-1 upper case ("EN", "ZH").

Lingua reads only the natural-language words of the text: code such as
`print(sum(range(10)))` is no language, and lingua would otherwise name one at random
(Xhosa for that one). Two kinds of words count:

- in scripts written with spaces between words (Latin, Cyrillic, Greek, Arabic,
  Devanagari ...), a whitespace-separated token of letters and combining marks (inner
  ' and - allowed, and the zero-width joiners Persian writes), punctuation around it
  aside: a token with other punctuation, digits or symbols inside is code, a URL, a
  number or markup, and is left out whole;
- in scripts written without spaces (Han, Japanese kana, Hangul, Thai, Lao, Khmer,
  Myanmar), every run of letters, wherever it stands: a Chinese or Japanese sentence is
  one whitespace token, its punctuation (，。？「」 ...) separates its runs, and the parts
  of the token between runs are judged as words of the first kind ("東京(Tokyo)について"
  is 東京 Tokyo について; in "北京有2000多万人口" the number is left out). Code is not
  written in these scripts, so a run in a string of code counts too (`print("你好世界")`
  is Chinese).

Letters are counted per script: a Han character is a word of CJK_LETTERS letters (it
writes a morpheme); a Hangul run is one word (Korean puts spaces between words) of as
many letters as its syllables have jamo; kana and Thai, Lao, Khmer and Myanmar letters
and marks (no spaces between words, and no dictionary here to find them) count one
letter each and a word per CJK_LETTERS of them, so a lone word such as こんにちは or
สวัสดี is too little, as "Hello" is. A text with too little natural language left (fewer
than MIN_WORDS words or MIN_LETTERS letters) gets `language: null` and the reason
TOO_LITTLE in `tag_errors`.

Why batches: lingua detects a list in parallel (Rust threads); the original looped over
records one by one. The detector (all languages, high accuracy, as the original) is built
once per process; its language models load on first use (a few seconds).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from functools import lru_cache

import regex

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
# Inside a word: apostrophes, hyphens, the Catalan middle dot, Hebrew geresh and gershayim,
# and the zero-width (non-)joiner of Persian and Indic words.
_INNER = frozenset("'’-\u2010\u2011·\u05f3\u05f4\u200c\u200d")
# Scripts written without spaces between words, by Unicode script extension (the regex
# module knows the script property; unicodedata does not). A run of their letters and
# marks is natural language wherever it stands.
_UNSPACED_SCRIPTS = "".join(
    rf"\p{{scx={name}}}" for name in "Han Hiragana Katakana Hangul Thai Lao Khmer Myanmar".split()
)
_UNSPACED = regex.compile(rf"[[\p{{L}}\p{{M}}]&&[{_UNSPACED_SCRIPTS}]]+", regex.V1)
_HAN = regex.compile(r"\p{scx=Han}")
_HANGUL = regex.compile(r"\p{scx=Hangul}+")


@lru_cache(maxsize=1)
def _detector():
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_all_languages().build()


def _is_letter(c: str) -> bool:
    """A letter or a combining mark (the vowel signs of Devanagari, Thai, Arabic ...)."""
    return unicodedata.category(c)[0] in "LM"


def _strip_punctuation(token: str) -> str:
    start, end = 0, len(token)
    while start < end and unicodedata.category(token[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(token[end - 1]).startswith("P"):
        end -= 1
    return token[start:end]


def _spaced_word(token: str) -> str:
    """`token` without the punctuation around it when that is a word (letters and marks,
    _INNER characters inside, starting with a letter), else ""."""
    core = _strip_punctuation(token)
    if not core or not unicodedata.category(core[0]).startswith("L"):
        return ""
    if not _is_letter(core[-1]) or not all(_is_letter(c) or c in _INNER for c in core):
        return ""
    return core


@lru_cache(maxsize=1 << 14)
def _spaced_counts(token: str) -> tuple[str, int]:
    """(`_spaced_word(token)`, its letters). Cached (a bounded cache: memory stays flat):
    words repeat from text to text, and looking at each of their characters in Python
    took a sixth of the language mission's time."""
    word = _spaced_word(token)
    return word, sum(1 for c in word if _is_letter(c))


def _run_counts(run: str) -> tuple[int, int]:
    """(words, letters) of a run of letters of scripts written without spaces."""
    han = len(_HAN.findall(run))
    hangul = _HANGUL.findall(run)
    jamo = sum(len(unicodedata.normalize("NFD", h)) for h in hangul)
    other = len(run) - han - sum(len(h) for h in hangul)
    words = han + len(hangul) + -(-other // CJK_LETTERS)
    return words, han * CJK_LETTERS + jamo + other


def natural_text(text: str) -> tuple[str, int, int]:
    """(the natural-language words of `text` joined by spaces, how many words, how many
    letters), as the module docstring says: runs of letters of scripts written without
    spaces, and whitespace-separated words (the parts of a token between such runs) of the
    others. Letters are counted after NFC normalisation, combining marks included."""
    words, n_words, n_letters = [], 0, 0

    def spaced(part: str) -> None:
        nonlocal n_words, n_letters
        for token in part.split():
            word, letters = _spaced_counts(token)
            if word:
                words.append(word)
                n_words += 1
                n_letters += letters

    # A run holds no whitespace, so the runs of the whole text are those of its tokens,
    # and what lies between two runs splits into the tokens (or parts of tokens) between.
    text, pos = unicodedata.normalize("NFC", text), 0
    for run in _UNSPACED.finditer(text):
        spaced(text[pos : run.start()])
        pos = run.end()
        words.append(run.group())
        w, n = _run_counts(run.group())
        n_words, n_letters = n_words + w, n_letters + n
    spaced(text[pos:])
    return " ".join(words), n_words, n_letters


def detect_language(texts: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """(ISO 639-1 code upper case, None) per text, or (None, reason): TOO_LITTLE for a
    text with too little natural language (code, numbers, a lone word), UNDETECTABLE when
    lingua names no language."""
    out: list[tuple[str | None, str | None]] = [(None, TOO_LITTLE)] * len(texts)
    todo, natural, counts = [], [], []
    for i, t in enumerate(texts):
        words, n_words, n_letters = natural_text(t or "")
        if n_words >= MIN_WORDS and n_letters >= MIN_LETTERS:
            todo.append(i)
            natural.append(words)
            counts.append(n_words)
    if not todo:
        return out
    # lingua's answer depends on the words alone: each distinct text is asked once (a
    # batch of generated instructions repeats many).
    detector = _detector()
    unique = list(dict.fromkeys(natural))
    found = dict(zip(unique, detector.detect_languages_in_parallel_of(unique), strict=True))
    # words as natural_text counts them: a Chinese sentence is one run between spaces
    short = list(dict.fromkeys(w for w, n in zip(natural, counts, strict=True) if n <= SHORT_WORDS))
    values = detector.compute_language_confidence_values_in_parallel(short) if short else []
    ranked = dict(zip(short, values, strict=True))
    for i, words, n in zip(todo, natural, counts, strict=True):
        lang = found[words]
        out[i] = (lang.iso_code_639_1.name, None) if lang is not None else (None, UNDETECTABLE)
        code = _unsure_short(ranked[words]) if n <= SHORT_WORDS else None
        if code is not None:
            out[i] = (code, None)
    return out


def _unsure_short(ranked) -> str | None:
    """For a short text lingua is unsure of (best confidence below UNSURE), the most
    likely of the COMMON languages, else None (lingua's own answer stands). A language of
    confidence 0 is never likely: lingua gives every language 0 for a script none of its
    languages use (Khmer, Lao, Myanmar), and names none."""
    if not ranked or ranked[0].value >= UNSURE:
        return None
    for c in ranked:
        code = c.language.iso_code_639_1.name
        if c.value > 0 and code in COMMON:
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
