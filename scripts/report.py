"""Plots and a short summary of a tagged dataset, as PNG files next to it.

    python scripts/report.py data/<job>/Magpie_..._language.json [--out_dir DIR]

Writes <stem>_task_category.png, <stem>_difficulty.png, <stem>_input_quality.png,
<stem>_min_neighbor_distance.png, <stem>_response_length.png (those the data has fields
for) and <stem>_report.md, and prints the summary.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.records import InputError  # noqa: E402
from magpie.report import write_report  # noqa: E402
from magpie.stage import run_cli  # noqa: E402


def main(input_file: str | None = None, out_dir: str | None = None):
    """Plot INPUT_FILE (.json or .jsonl, any stage's output: tagged, distance-annotated,
    filtered or ShareGPT) and print a short summary.

    Args:
      input_file: the dataset.
      out_dir: where the PNGs and <stem>_report.md go; default next to the input.
    """
    if not input_file:
        raise InputError("give the dataset file: python scripts/report.py FILE")
    text, files = write_report(input_file, out_dir)
    print(text)
    for f in files:
        print(f"[report] wrote {f}")


if __name__ == "__main__":
    run_cli(main)
