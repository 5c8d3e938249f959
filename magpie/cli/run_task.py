"""Run data-builder task files (fms-dgt style): skills generation or tag transformation."""

from __future__ import annotations

import json
import sys

from magpie.engines import EngineOptions, with_engine_flags
from magpie.records import InputError
from magpie.stage import run_cli
from magpie.tasks import load_task, run_task


@with_engine_flags
def main(
    *task_paths: str,
    output_root: str = "data",
    overwrite: bool = False,
    engine_options: EngineOptions,
):
    """Run each task file in turn; outputs go to OUTPUT_ROOT/<task_name>/.

    Usage: python exp/run_task.py --task-paths tasks/a.yaml tasks/b.yaml

    The engine flags below override a task file's fields of the same name when given
    (other than their defaults); with --executor ray a tag transformation runs on Ray
    replicas of each model.

    Args:
      task_paths: task YAML files (also accepted as --task-paths / --task_paths).
      output_root: folder for the tasks' outputs.
      overwrite: replace outputs made with other task settings (a mismatch is refused
        without this; a rerun with the same settings reuses them).
    """
    paths = list(task_paths)
    if not paths:
        raise InputError("give task files: --task-paths PATH [PATH ...]")
    for path in paths:
        load_task(path)  # every file is checked before any runs
    for path in paths:
        summary = run_task(path, output_root, overwrite=overwrite, engine_options=engine_options)
        print(f"[run_task] {json.dumps(summary)}")


def cli() -> None:
    """The `magpie-run-task` command."""
    # fire reads "--task-paths a b" as one value; pass the following paths positionally.
    if {"--help", "-h"} & set(sys.argv[1:]):
        print(main.__doc__)  # on stdout (fire's own help goes to stderr)
        sys.exit(0)
    flags = ("--task-paths", "--task_paths")
    argv = [
        a.split("=", 1)[1] if a.startswith(tuple(f + "=" for f in flags)) else a
        for a in sys.argv[1:]
    ]
    run_cli(main, [a for a in argv if a not in flags], stage="run_task")


if __name__ == "__main__":
    cli()
