"""What every stage CLI shares: logging, the one-line summary, clean exits on bad input."""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable

from magpie.compat import original_argv, stage_name
from magpie.records import InputError

log = logging.getLogger("magpie")
INTERRUPTED = "interrupted: what was made is journaled; rerun the same command to resume"


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S", force=True
    )
    quiet_libraries()


def quiet_libraries() -> None:
    """Libraries log warnings only, and transformers shows no weight-loading bars (the
    stage's own bar and start/end lines say what happens)."""
    for noisy in ("transformers", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Read by huggingface_hub, and by transformers when it is first imported.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


class Summary:
    """Counts for the one summary line a stage prints at its end."""

    def __init__(self, stage: str, records_in: int = 0):
        self.stage = stage
        self.records_in = records_in
        self.records_out = 0
        self.flags: Counter = Counter()
        self.tokens = 0
        self.resumed = 0
        self.start = time.time()

    def line(self) -> str:
        seconds = time.time() - self.start
        flags = ", ".join(f"{k} {v}" for k, v in sorted(self.flags.items())) or "none"
        rate = f", {self.tokens / seconds:.0f} tok/s" if self.tokens and seconds > 0 else ""
        resumed = f", {self.resumed} resumed from journal" if self.resumed else ""
        return (
            f"[{self.stage}] records in {self.records_in}, out {self.records_out}; "
            f"flagged: {flags}; {seconds:.1f} s, {self.tokens} tokens{rate}{resumed}"
        )


def json_type(value) -> str:
    """The JSON type of a value ('number', 'string', 'boolean', 'null', 'array', 'object'):
    a column keeps one, so ids are never a mix of numbers and strings."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list | tuple) else "object"


def already_complete(stage: str, journal, output) -> bool:
    """Say so when a stage's output is already made with these settings and input."""
    if journal.complete:
        print(f"[{stage}] {output} is already complete (same settings and input); nothing to do")
    return journal.complete


def run_cli(main: Callable, argv: list[str] | None = None, stage: str | None = None) -> None:
    """Run a fire CLI; bad input ends with one clear line and exit code 2.

    The original's command lines work unchanged (magpie.compat): its flag abbreviations
    are spelt out, its meaningless flags dropped with a note, unknown flags refused.
    """
    import fire

    setup_logging()
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        params = inspect.signature(main).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            args = original_argv(stage or stage_name(), args, set(params))
        fire.Fire(main, command=args, name=stage)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
