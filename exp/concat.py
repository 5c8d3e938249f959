"""Concatenate tagged shards into one ShareGPT JSONL (data_concatenation.ipynb).

The original's command line, unchanged; the code is magpie/stages/concat.py, also installed
as the `magpie-concat` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stages.concat import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
