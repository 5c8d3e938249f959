"""Preference data, step 3: chosen/rejected pairs for DPO (the original's process_po.ipynb).

The original's command line, unchanged; the code is magpie/stages/gen_po_pairs.py, also installed
as the `magpie-gen-po-pairs` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stages.gen_po_pairs import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
