"""Preference data, step 1: N responses per instruction (the original's gen_po_multi_res.py).

The original's command line, unchanged; the code is magpie/cli/gen_po_multi_res.py, also installed
as the `magpie-gen-po-multi-res` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.cli.gen_po_multi_res import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
