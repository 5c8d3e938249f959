"""Preference data, step 2: score every response with a reward model, or with a chat model

The original's command line, unchanged; the code is magpie/stages/gen_po_rewards.py, also installed
as the `magpie-gen-po-rewards` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stages.gen_po_rewards import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
