"""Tag label vocabularies, in one place for the tagger, the ShareGPT export and the filters.

They follow the original's tagging prompts (§2.6 of the reference): note "Others", not the
"Other" that the original's concatenation notebook checked against (its bug nulled every
"Others"). Sample-quality judge scores are the integers 1..5 (fms-dgt writes them as the
strings "1".."5"; the filters accept both).
"""

from __future__ import annotations

DIFFICULTY: tuple[str, ...] = ("very easy", "easy", "medium", "hard", "very hard")

INPUT_QUALITY: tuple[str, ...] = ("very poor", "poor", "average", "good", "excellent")

TASK_CATEGORIES: tuple[str, ...] = (
    "Information seeking",
    "Reasoning",
    "Planning",
    "Editing",
    "Coding & Debugging",
    "Math",
    "Role playing",
    "Data analysis",
    "Creative writing",
    "Advice seeking",
    "Brainstorming",
    "Others",
)

SAMPLE_QUALITY_SCORES: tuple[int, ...] = (1, 2, 3, 4, 5)
