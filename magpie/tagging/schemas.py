"""Label vocabularies, the JSON schema each LLM mission answers in, and label checks.

Why schemas: the label fields are enums, so constrained decoding (xgrammar on the hf
engine, structured outputs on vLLM) can only produce labels of the vocabulary, and the
free-text fields have a length cap so that a small model cannot ramble past max_tokens.
Why the checks anyway: engines without constrained decoding, and lenient parsing, can
still hand back anything; a label outside the vocabulary is never stored.
"""

from __future__ import annotations

import re

from magpie import labels

# The label vocabularies live in magpie.labels (shared with the export and the filters).
DIFFICULTY = labels.DIFFICULTY
QUALITY = labels.INPUT_QUALITY
TASK_CATEGORIES = labels.TASK_CATEGORIES
SCORES = labels.SAMPLE_QUALITY_SCORES
# Llama Guard 2's hazard codes (the MLCommons taxonomy); the tagger's safety prompt uses
# these so that `llama_guard_2` reads the same whoever judged.
SAFETY_CATEGORIES = {
    "S1": "Violent crimes",
    "S2": "Non-violent crimes",
    "S3": "Sex crimes",
    "S4": "Child sexual exploitation",
    "S5": "Specialized advice",
    "S6": "Privacy",
    "S7": "Intellectual property",
    "S8": "Indiscriminate weapons",
    "S9": "Hate",
    "S10": "Self-harm",
    "S11": "Sexual content",
}
# A Llama Guard verdict as stored: "safe", or "unsafe" and a line of S-codes.
GUARD_VERDICT = re.compile(r"^(safe|unsafe\nS\d+(,S\d+)*)$")

# Record fields each mission writes (original names, and this project's `_confidence` and
# `_score` beside a label read from probabilities: magpie.tagging.scoring); for a model
# mission the last one names who judged.
FIELDS: dict[str, tuple[str, ...]] = {
    "difficulty": (
        "intent",
        "knowledge",
        "difficulty",
        "difficulty_confidence",
        "difficulty_score",
        "difficulty_generator",
    ),
    "quality": (
        "input_quality",
        "input_quality_confidence",
        "input_quality_score",
        "quality_explanation",
        "quality_generator",
    ),
    "sample_quality": (
        "sample_quality",
        "sample_quality_confidence",
        "sample_quality_score",
        "sample_quality_explanation",
        "sample_quality_generator",
    ),
    "classification": (
        "task_category",
        "task_category_confidence",
        "other_task_category",
        "task_category_generator",
    ),
    "safety": ("llama_guard_2", "safety_generator"),
    "reward": ("instruct_reward", "reward_truncated", "reward_model"),
    "language": ("language",),
}

SHORT_TEXT = 160  # intent, knowledge (characters)
LONG_TEXT = 300  # explanations
MAX_OTHER_TAGS = 3


def _text(limit: int) -> dict:
    return {"type": "string", "minLength": 1, "maxLength": limit}


def _enum(values) -> dict:
    kind = "integer" if all(isinstance(v, int) for v in values) else "string"
    return {"type": kind, "enum": list(values)}


def _object(**properties) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


SCHEMAS: dict[str, dict] = {
    "difficulty": _object(
        intent=_text(SHORT_TEXT), knowledge=_text(SHORT_TEXT), difficulty=_enum(DIFFICULTY)
    ),
    "quality": _object(explanation=_text(LONG_TEXT), input_quality=_enum(QUALITY)),
    "sample_quality": _object(explanation=_text(LONG_TEXT), score=_enum(SCORES)),
    "classification": _object(
        primary_tag=_enum(TASK_CATEGORIES),
        other_tags={"type": "array", "items": _enum(TASK_CATEGORIES), "maxItems": MAX_OTHER_TAGS},
    ),
    "safety": {
        "anyOf": [
            _object(verdict={"type": "string", "const": "safe"}),
            _object(
                verdict={"type": "string", "const": "unsafe"},
                category=_enum(SAFETY_CATEGORIES),
            ),
        ]
    },
}


class LabelError(ValueError):
    """A model answer that cannot be stored; the message is the reason recorded."""


def label(value, vocabulary, key: str):
    """`value` as the vocabulary spells it (case, spaces and stray quotes forgiven).

    "Other" is read as "Others": the original's own notebook spelled it so (§9 item 1).
    """
    if isinstance(value, bool):
        raise LabelError(f"invalid_label: {key} {value!r} not in vocabulary")
    if isinstance(value, (int, float)) and value in vocabulary:
        return int(value)
    if isinstance(value, str):
        text = " ".join(value.strip().strip("\"'.` ").split()).lower()
        for v in vocabulary:
            if str(v).lower() == text:
                return v
        if text == "other" and "Others" in vocabulary:
            return "Others"
        if text.isdigit() and int(text) in vocabulary:
            return int(text)
    raise LabelError(f"invalid_label: {key} {value!r} not in vocabulary")


def text(value, key: str) -> str:
    """A free-text field: a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise LabelError(f"invalid_label: {key} missing or empty")
    return value.strip()


def _get(answer: dict, key: str):
    if key not in answer:
        raise LabelError(f"invalid_label: key '{key}' missing")
    return answer[key]


def fields_from_answer(mission: str, answer: dict) -> dict:
    """The record fields (original names) of a parsed model answer; LabelError if any
    label is outside its vocabulary."""
    if mission == "difficulty":
        return {
            "intent": text(_get(answer, "intent"), "intent"),
            "knowledge": text(_get(answer, "knowledge"), "knowledge"),
            "difficulty": label(_get(answer, "difficulty"), DIFFICULTY, "difficulty"),
        }
    if mission == "quality":
        return {
            "input_quality": label(_get(answer, "input_quality"), QUALITY, "input_quality"),
            "quality_explanation": text(_get(answer, "explanation"), "explanation"),
        }
    if mission == "sample_quality":
        return {
            "sample_quality": label(_get(answer, "score"), SCORES, "score"),
            "sample_quality_explanation": text(_get(answer, "explanation"), "explanation"),
        }
    if mission == "classification":
        primary = label(_get(answer, "primary_tag"), TASK_CATEGORIES, "primary_tag")
        others = answer.get("other_tags") or []
        if isinstance(others, str):
            others = [others]
        if not isinstance(others, list):
            raise LabelError("invalid_label: other_tags is not a list")
        other = []
        for o in others:
            o = label(o, TASK_CATEGORIES, "other_tags")
            if o != primary and o not in other:
                other.append(o)
        return {"task_category": primary, "other_task_category": other}
    if mission == "safety":
        verdict = label(_get(answer, "verdict"), ("safe", "unsafe"), "verdict")
        if verdict == "safe":
            return {"llama_guard_2": "safe"}
        code = str(_get(answer, "category")).strip().upper()
        if code not in SAFETY_CATEGORIES:
            raise LabelError(f"invalid_label: category {code!r} not in S1..S11")
        return {"llama_guard_2": f"unsafe\n{code}"}
    raise KeyError(mission)
