"""Filter tagged, distance-annotated records into a training set (data_filter.ipynb).

The original's command line, unchanged; the code is magpie/stages/filter.py, also installed
as the `magpie-filter` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stages.filter import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
