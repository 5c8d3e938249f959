"""Preference data, step 3: chosen/rejected pairs for DPO (the original's process_po.ipynb)."""

from __future__ import annotations

from magpie.preference import build_pairs
from magpie.records import InputError
from magpie.stage import run_cli


def main(
    input_file: str | None = None,
    output_dir: str | None = None,
    min_margin: float = 0.0,
    test_size: float = 0.02,
    seed: int = 42,
    reward_field: str | None = None,
    use_flagged: bool = False,
):
    """Pick, for each record of INPUT_FILE (the output of gen_po_rewards.py), the best and
    the worst response as chosen and rejected; write train.jsonl and test.jsonl.

    Args:
      input_file: records with `instruction`, `responses` and their scores.
      output_dir: default <input stem>_dpo/ next to the input.
      min_margin: smallest score difference between chosen and rejected; records below
        it are dropped and counted (ties always are). The scale is the reward model's.
      test_size: share of pairs for the test split (0.02 as the original), or a count.
      seed: seed of the train/test split.
      reward_field: the field holding the scores; default rewards_armorm or rewards,
        whichever the records carry.
      use_flagged: let responses flagged empty or unfinished be chosen or rejected.
    """
    if not input_file:
        raise InputError("--input_file is required")
    build_pairs(
        input_file,
        output_dir,
        min_margin=float(min_margin),
        test_size=float(test_size),
        seed=int(seed),
        reward_field=reward_field,
        use_flagged=use_flagged,
    )


def cli() -> None:
    """The `magpie-gen-po-pairs` command."""
    run_cli(main, stage="gen_po_pairs")


if __name__ == "__main__":
    cli()
