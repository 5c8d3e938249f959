"""Near-duplicates: nearest-neighbour distance and repetition (the original's gen_dis.py).

The original's command line, unchanged; the code is magpie/stages/gen_dis.py, also installed
as the `magpie-gen-dis` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stages.gen_dis import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
