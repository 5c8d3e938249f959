"""Run data-builder task files (fms-dgt style): skills generation or tag transformation."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from magpie.engines import EngineOptions
from magpie.records import InputError
from magpie.settings import Settings, command, flag, help_text, run_command
from magpie.tasks import load_task, run_task


@dataclasses.dataclass
class RunTask(Settings):
    """Run each task file in turn; outputs go to OUTPUT_ROOT/<task_name>/.

    Usage: python exp/run_task.py --task-paths tasks/a.yaml tasks/b.yaml

    The engine flags below override a task file's fields of the same name when given
    (other than their defaults); with --executor ray a tag transformation runs on Ray
    replicas of each model."""

    stage = "run_task"
    uses_engine = True
    input_field = None

    task_paths: list[str] = flag(
        [], "task YAML files (also accepted as --task-paths / --task_paths).", positional=True
    )
    output_root: str = flag("data", "folder for the tasks' outputs.")
    overwrite: bool = flag(
        False,
        "replace outputs made with other task settings (a mismatch is refused without "
        "this; a rerun with the same settings reuses them).",
    )

    def run(self, engine: EngineOptions | None = None) -> Path:
        """Run the tasks; return the last one's final data file."""
        paths = list(self.task_paths)
        if not paths:
            raise InputError("give task files: --task-paths PATH [PATH ...]")
        names = [load_task(path)["task_name"] for path in paths]  # all checked before any runs
        for path in paths:
            summary = run_task(
                path,
                self.output_root,
                overwrite=self.overwrite,
                engine_options=engine or EngineOptions(),
            )
            print(f"[run_task] {json.dumps(summary)}")
        return Path(self.output_root) / names[-1] / "final_data.jsonl"


main = command(RunTask)


def cli() -> None:
    """The `magpie-run-task` command."""
    # fire reads "--task-paths a b" as one value; pass the following paths positionally.
    if {"--help", "-h"} & set(sys.argv[1:]):
        print(help_text(RunTask))  # on stdout (fire's own help goes to stderr)
        sys.exit(0)
    flags = ("--task-paths", "--task_paths")
    argv = [
        a.split("=", 1)[1] if a.startswith(tuple(f + "=" for f in flags)) else a
        for a in sys.argv[1:]
    ]
    run_command(RunTask, [a for a in argv if a not in flags])


if __name__ == "__main__":
    cli()
