"""Filter tagged, distance-annotated records into a training set (data_filter.ipynb).

The original's command line, unchanged; the code is magpie/cli/filter.py, also installed
as the `magpie-filter` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.cli.filter import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
