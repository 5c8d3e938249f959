"""Preference data, step 1: N responses per instruction (the original's gen_po_multi_res.py).

The original's command line, unchanged; the code is magpie/stages/gen_res.py, also installed
as the `magpie-gen-po-multi-res` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stages.gen_res import cli_po_multi_res as cli  # noqa: E402
from magpie.stages.gen_res import main_po_multi_res as main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
