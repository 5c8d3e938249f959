"""Filter tagged, distance-annotated records into a training set (data_filter.ipynb)."""

from __future__ import annotations

from magpie.filters import load_filter_config, run_filter
from magpie.records import InputError
from magpie.stage import run_cli


def main(
    input_file: str | None = None,
    config: str | None = None,
    output_file: str | None = None,
    rejected_file: str | None = None,
    generation_flags: bool | None = None,
    input_quality: str | None = None,
    min_instruct_reward: float | None = None,
    no_trailing_colon: bool | None = None,
    remove_duplicates: bool | None = None,
    sample_quality: str | None = None,
    sample_quality_field: str | None = None,
    difficulty: str | None = None,
    task_category: str | None = None,
    language: str | None = None,
    safe_only: bool | None = None,
    safety_field: str | None = None,
    response_pattern: str | None = None,
    max_per_category: int | None = None,
    top_k: int | None = None,
    shuffle: bool | None = None,
    seed: int | None = None,
):
    """Keep the records of INPUT_FILE that pass every rule; the rest go to a rejects file
    with the rule that rejected them. Flags override the --config preset.

    Args:
      input_file: .json or .jsonl records (usually the output of gen_dis.py); a .json
        object holding them under its one list-valued key (data, train, rows ...) is read
        too (README "Input files").
      config: a YAML preset: a file, or the name of a shipped one (magpie: the
        original's rules; magpie-300k, magpie-dpo, fms-dgt, strict-en; files in
        magpie/configs/filters/, also reached as configs/filters/*.yaml).
      output_file: default <input stem>_filtered.jsonl.
      rejected_file: default <input stem>_rejected.jsonl.
      generation_flags: drop records with a non-null *_flag, and records whose
        conversation is not whole (no complete exchange, or turns after the last one,
        such as an unanswered follow-up); default on.
      input_quality: allowed labels, comma-separated, e.g. good,excellent.
      min_instruct_reward: keep instruct_reward above this (the original: -10).
      no_trailing_colon: drop instructions ending with a colon of any script (":", "：").
      remove_duplicates: drop records whose near-duplicate representative is another record.
      sample_quality: allowed judge scores, e.g. 4,5.
      sample_quality_field: the field holding the judge score (default sample_quality).
      difficulty: allowed difficulties, e.g. "medium,hard,very hard".
      task_category: allowed task categories.
      language: allowed ISO 639-1 codes, e.g. EN,FR.
      safe_only: keep only records judged "safe" by Llama Guard.
      safety_field: the field holding the verdict (default llama_guard_2).
      response_pattern: keep responses matching this regular expression, e.g.
        "^## Step 1" for step-by-step answers.
      max_per_category: keep at most this many records per task_category (a seeded
        random choice within each category).
      top_k: keep the K records with the longest responses (all, when fewer survive).
      shuffle: shuffle the kept records.
      seed: seed of the shuffle and of --max_per_category's choice (default 42).
    """
    if not input_file:
        raise InputError("--input_file is required")
    cfg = load_filter_config(
        config,
        generation_flags=generation_flags,
        input_quality=input_quality,
        min_instruct_reward=min_instruct_reward,
        no_trailing_colon=no_trailing_colon,
        remove_duplicates=remove_duplicates,
        sample_quality=sample_quality,
        sample_quality_field=sample_quality_field,
        difficulty=difficulty,
        task_category=task_category,
        language=language,
        safe_only=safe_only,
        safety_field=safety_field,
        response_pattern=response_pattern,
        max_per_category=max_per_category,
        top_k=top_k,
        shuffle=shuffle,
        seed=seed,
    )
    run_filter(input_file, cfg, output_file, rejected_file)


def cli() -> None:
    """The `magpie-filter` command."""
    run_cli(main, stage="filter")


if __name__ == "__main__":
    cli()
