"""Stage 3 (optional): extend single-turn records to N turns (the original's gen_mt.py).

The original's command line, unchanged; the code is magpie/stages/gen_mt.py, also installed
as the `magpie-gen-mt` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stages.gen_mt import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
