"""Tagging (the original's unitag.py): missions, groups and output names.

Missions and the fields they write (original names where the original had them):

- difficulty: intent, knowledge, difficulty, difficulty_generator
- quality: input_quality, quality_explanation, quality_generator
- sample_quality: sample_quality (int 1-5, the instruction and its response judged
  together), sample_quality_explanation, sample_quality_generator
- classification: task_category, other_task_category, task_category_generator
- safety: llama_guard_2 ("safe" or "unsafe\\nS<n>"), safety_generator (who judged: the
  guard model, or the tagger LLM with this project's safety prompt)
- reward: instruct_reward, reward_truncated (the instruction's start was cut to fit), reward_model
- language: language (ISO 639-1 upper case)

A mission that cannot tag a record leaves its fields null and records why in
`tag_errors[<mission>]` ("no_text: ...", "no_response: ...", "unparseable: ...",
"invalid_label: ...", "truncated: ...", "guard_output: ...", "undetectable",
"too little natural language" for code or a lone word, which gets `language: null`).

Each mission writes `<input stem><suffix>.<json|jsonl>` next to its input, and a group
chains them: `x.json` -> `x_difficulty.json` -> `x_difficulty_quality.json` ...
"""

from __future__ import annotations

from pathlib import Path

from magpie.records import InputError, saved_as

MISSIONS = (
    "difficulty",
    "quality",
    "sample_quality",
    "classification",
    "safety",
    "reward",
    "language",
)
# "all" keeps the original's order, with sample_quality after quality.
GROUPS = {"all": MISSIONS, "magpie": ("quality", "sample_quality", "difficulty")}
SUFFIX = {
    "difficulty": "_difficulty",
    "quality": "_quality",
    "sample_quality": "_sample_quality",
    "classification": "_category",
    "safety": "_safety",
    "reward": "_reward",
    "language": "_language",
}
# Missions the tagger LLM answers (safety too, when no guard model is given).
LLM_MISSIONS = ("difficulty", "quality", "sample_quality", "classification")

# (tagger model, mission) pairs whose labels cannot be trusted, measured on the
# hand-labelled set tests/fixtures/tagging/hand_labelled.jsonl (bench/bench_tag_trust.py,
# BENCHMARKS.md): such records get null fields and this reason, not a confident wrong label.
# Trusted: a mission whose scores separate the set's bad examples from the good ones
# (quality: gibberish, sample_quality: wrong answers), or whose labels agree with the hand
# labels more often than always giving the set's commonest label would.
_EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"
_LARGER = "give a larger --model_path (e.g. meta-llama/Meta-Llama-3-8B-Instruct)"
CANNOT_JUDGE = {
    (_EMBEDDED, "safety"): (
        "cannot_judge: the embedded SmolLM2-135M-Instruct tagger does not separate unsafe "
        "requests from safe ones; give --guard_model_path (e.g. "
        "meta-llama/Meta-Llama-Guard-2-8B) or a larger --model_path"
    ),
    (_EMBEDDED, "difficulty"): (
        "cannot_judge: the embedded SmolLM2-135M-Instruct tagger's difficulty agrees with "
        f"hand labels no better than chance (6 of 30); {_LARGER}"
    ),
    (_EMBEDDED, "classification"): (
        "cannot_judge: the embedded SmolLM2-135M-Instruct tagger's task category agrees "
        "with hand labels less often than always answering 'Information seeking' (11 vs 13 "
        f"of 30); {_LARGER}"
    ),
}


def expand(tag_mission: str) -> list[str]:
    """The missions a name stands for, in order."""
    if tag_mission in GROUPS:
        return list(GROUPS[tag_mission])
    if tag_mission in MISSIONS:
        return [tag_mission]
    names = ", ".join((*MISSIONS, *GROUPS))
    raise InputError(f"unknown tag mission '{tag_mission}'; expected one of {names}")


def output_file(input_file: str | Path, mission: str, save_as: str = "json") -> Path:
    """<input stem><mission suffix>.<save_as>, next to the input."""
    p = Path(input_file)
    return saved_as(p.with_name(f"{p.stem}{SUFFIX[mission]}.json"), save_as)
