"""Preference data, step 3: chosen/rejected pairs for DPO (the original's process_po.ipynb)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from magpie.engines import EngineOptions
from magpie.preference import build_pairs
from magpie.records import InputError
from magpie.settings import Settings, command, console, flag


@dataclasses.dataclass
class GenPoPairs(Settings):
    """Pick, for each record of INPUT_FILE (the output of gen_po_rewards.py), the best and
    the worst response as chosen and rejected; write train.jsonl and test.jsonl."""

    stage = "gen_po_pairs"

    input_file: str | None = flag(None, "records with `instruction`, `responses` and their scores.")
    output_dir: str | None = flag(None, "default <input stem>_dpo/ next to the input.")
    min_margin: float = flag(
        0.0,
        "smallest score difference between chosen and rejected; records below it are "
        "dropped and counted (ties always are). The scale is the reward model's.",
    )
    test_size: float = flag(
        0.02, "share of pairs for the test split (0.02 as the original), or a count."
    )
    seed: int = flag(42, "seed of the train/test split.")
    reward_field: str | None = flag(
        None,
        "the field holding the scores; default rewards_armorm or rewards, whichever the "
        "records carry.",
    )
    use_flagged: bool = flag(
        False, "let responses flagged empty or unfinished be chosen or rejected."
    )

    def run(self, engine: EngineOptions | None = None) -> Path:
        """Write the pairs; return their folder (train.jsonl and test.jsonl)."""
        if not self.input_file:
            raise InputError("--input_file is required")
        counts = build_pairs(
            self.input_file,
            self.output_dir,
            min_margin=float(self.min_margin),
            test_size=float(self.test_size),
            seed=int(self.seed),
            reward_field=self.reward_field,
            use_flagged=self.use_flagged,
        )
        return Path(counts["output_dir"])


main, cli = command(GenPoPairs), console(GenPoPairs)

if __name__ == "__main__":
    cli()
