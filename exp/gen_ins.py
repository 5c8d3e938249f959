"""Stage 1: extract instructions with the pre-query template (the original's gen_ins.py).

The original's command line, unchanged; the code is magpie/stages/gen_ins.py, also installed
as the `magpie-gen-ins` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stages.gen_ins import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
