"""One-pass steered conversations (distilabel-style Magpie options) in a stage of its own.

The original's command line, unchanged; the code is magpie/cli/gen_conv.py, also installed
as the `magpie-gen-conv` command."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.cli.gen_conv import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
