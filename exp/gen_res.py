"""Stage 2: answer each instruction with the same model (the original's gen_res.py).

The original's command line, unchanged; the code is magpie/stages/gen_res.py, also installed
as the `magpie-gen-res` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stages.gen_res import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
