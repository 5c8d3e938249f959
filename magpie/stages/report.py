"""The report page of a run: a recipe's last stage, or `magpie report PATH...`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from magpie.engines import EngineOptions
from magpie.records import InputError
from magpie.report_data import DEFAULT_SAMPLE
from magpie.settings import Settings, command, console, flag


@dataclasses.dataclass
class Report(Settings):
    """Write one self-contained HTML page (opens offline) about the run folders or record
    files PATHS: the funnel of the stages found, the distributions of the last stage's
    records, and a browser over a sample of them. A recipe ends with it as
    `- report: {whole_run: true}` to report on the whole run (the folder of the previous
    stage's output), or `- report: {}` for that output alone."""

    stage = "report"
    input_field: ClassVar[str | None] = "input_files"

    input_files: list[str] = flag(
        [],
        "run folders (every stage output in them) or record files (.json or .jsonl).",
        positional=True,
    )
    output: str | None = flag(
        None, "the page; default report.html in the (first) folder, or <stem>_report.html."
    )
    sample: int = flag(
        DEFAULT_SAMPLE,
        "records the page lets you browse (a uniform random sample; counts use every record).",
    )
    whole_run: bool = flag(
        False,
        "report on the folder of each file given (its whole run), not the file alone.",
    )

    def run(self, engine: EngineOptions | None = None) -> Path:
        """Write the page; return its path."""
        from magpie.report_page import build_report

        items = self.input_files
        if isinstance(items, str | Path):
            items = [items]
        if not items:
            raise InputError("give the run folder or record files to report on")
        paths = [Path(p) for p in items]
        if self.whole_run:
            paths = list(dict.fromkeys(p if p.is_dir() else p.parent for p in paths))
        out = build_report(paths, self.output, self.sample)
        print(f"[report] wrote {out}")
        return out


main, cli = command(Report), console(Report)

if __name__ == "__main__":
    cli()
