"""Tagging: difficulty, quality, sample_quality, classification, safety, reward, language

The original's command line, unchanged; the code is magpie/stages/unitag.py, also installed
as the `magpie-unitag` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stages.unitag import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
