"""Run data-builder task files (fms-dgt style): skills generation or tag transformation.

The original's command line, unchanged; the code is magpie/stages/run_task.py, also installed
as the `magpie-run-task` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stages.run_task import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
