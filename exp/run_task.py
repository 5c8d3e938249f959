"""Run data-builder task files (fms-dgt style): skills generation or tag transformation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.stage import run_cli  # noqa: E402
from magpie.tasks import load_task, run_task  # noqa: E402


def main(*task_paths: str, output_root: str = "data", overwrite: bool = False, **flags):
    """Run each task file in turn; outputs go to OUTPUT_ROOT/<task_name>/.

    Usage: python exp/run_task.py --task-paths tasks/a.yaml tasks/b.yaml

    Args:
      task_paths: task YAML files (also accepted as --task-paths / --task_paths).
      output_root: folder for the tasks' outputs.
      overwrite: replace outputs made with other task settings (a mismatch is refused
        without this; a rerun with the same settings reuses them).
    """
    if flags.pop("help", False) or flags.pop("h", False):
        print(main.__doc__)  # fire hands --help to **flags here instead of printing it
        return
    paths = list(task_paths)
    for key in ("task_paths", "task-paths"):
        value = flags.pop(key, None)
        if value:
            paths += list(value) if isinstance(value, list | tuple) else [value]
    if flags:
        from magpie.records import InputError

        raise InputError(f"unknown option(s): {', '.join('--' + k for k in flags)}")
    if not paths:
        from magpie.records import InputError

        raise InputError("give task files: --task-paths PATH [PATH ...]")
    for path in paths:
        load_task(path)  # every file is checked before any runs
    for path in paths:
        summary = run_task(path, output_root, overwrite=overwrite)
        print(f"[run_task] {json.dumps(summary)}")


if __name__ == "__main__":
    # fire reads "--task-paths a b" as one value; pass the following paths positionally.
    argv = sys.argv[1:]
    for flag in ("--task-paths", "--task_paths"):
        if flag in argv:
            argv.remove(flag)
    sys.argv = [sys.argv[0], *argv]
    run_cli(main)
