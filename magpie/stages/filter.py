"""Filter tagged, distance-annotated records into a training set (data_filter.ipynb)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from magpie.card import after_stage
from magpie.engines import EngineOptions
from magpie.filters import filtered_file_names, load_filter_config, run_filter
from magpie.records import InputError
from magpie.settings import Settings, command, console, flag


@dataclasses.dataclass
class Filter(Settings):
    """Keep the records of INPUT_FILE that pass every rule; the rest go to a rejects file
    with the rule that rejected them. Flags override the --config preset."""

    stage = "filter"

    input_file: str | None = flag(
        None,
        ".json or .jsonl records (usually the output of gen_dis.py); a .json "
        "object holding them under its one list-valued key (data, train, rows ...) is read "
        'too (README "Input files").',
    )
    config: str | None = flag(
        None,
        "a YAML preset: a file, or the name of a shipped one (magpie: the original's rules; "
        "magpie-300k, magpie-dpo, fms-dgt, strict-en; files in magpie/configs/filters/, also "
        "reached as configs/filters/*.yaml).",
    )
    output_file: str | None = flag(None, "default <input stem>_filtered.jsonl.")
    rejected_file: str | None = flag(None, "default <input stem>_rejected.jsonl.")
    generation_flags: bool | None = flag(
        None,
        "drop records with a non-null *_flag, and records whose conversation is not whole "
        "(no complete exchange, or turns after the last one, such as an unanswered "
        "follow-up); default on.",
    )
    input_quality: str | None = flag(None, "allowed labels, comma-separated, e.g. good,excellent.")
    min_instruct_reward: float | None = flag(
        None, "keep instruct_reward above this (the original: -10)."
    )
    no_trailing_colon: bool | None = flag(
        None, 'drop instructions ending with a colon of any script (":", "：").'
    )
    remove_duplicates: bool | None = flag(
        None, "drop records whose near-duplicate representative is another record."
    )
    sample_quality: str | None = flag(None, "allowed judge scores, e.g. 4,5.")
    sample_quality_field: str | None = flag(
        None, "the field holding the judge score (default sample_quality)."
    )
    difficulty: str | None = flag(None, 'allowed difficulties, e.g. "medium,hard,very hard".')
    task_category: str | None = flag(None, "allowed task categories.")
    language: str | None = flag(None, "allowed ISO 639-1 codes, e.g. EN,FR.")
    safe_only: bool | None = flag(None, 'keep only records judged "safe" by Llama Guard.')
    safety_field: str | None = flag(None, "the field holding the verdict (default llama_guard_2).")
    response_pattern: str | None = flag(
        None,
        'keep responses matching this regular expression, e.g. "^## Step 1" for '
        "step-by-step answers.",
    )
    max_per_category: int | None = flag(
        None,
        "keep at most this many records per task_category (a seeded random choice within "
        "each category).",
    )
    top_k: int | None = flag(
        None, "keep the K records with the longest responses (all, when fewer survive)."
    )
    shuffle: bool | None = flag(None, "shuffle the kept records.")
    seed: int | None = flag(
        None, "seed of the shuffle and of --max_per_category's choice (default 42)."
    )

    def run(self, engine: EngineOptions | None = None) -> Path:
        """Write the kept and the rejected records; return the kept records' file."""
        if not self.input_file:
            raise InputError("--input_file is required")
        files = ("input_file", "config", "output_file", "rejected_file")
        # The other flags are rules, set over the preset's (None: the preset's, or default).
        rules = {f.name: getattr(self, f.name) for f in self.flags() if f.name not in files}
        cfg = load_filter_config(self.config, **rules)
        report = run_filter(self.input_file, cfg, self.output_file, self.rejected_file)
        output = Path(self.output_file) if self.output_file else None
        output = output or filtered_file_names(self.input_file)[0]
        after_stage(self, output, report.not_applied)  # meta file; the export's card
        return output


main, cli = command(Filter), console(Filter)

if __name__ == "__main__":
    cli()
