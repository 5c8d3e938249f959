"""One-pass steered conversations (distilabel-style Magpie options) in a stage of its own.

The original's command line, unchanged; the code is magpie/stages/gen_mt.py, also installed
as the `magpie-gen-conv` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stages.gen_mt import cli_conv as cli  # noqa: E402
from magpie.stages.gen_mt import main_conv as main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
