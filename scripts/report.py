"""The report page of a run (or of record files): one HTML file that opens offline.

    python scripts/report.py data/<job>/ [MORE PATHS...] [--output FILE] [--sample N] [--pngs]

The same page as `magpie report`: the funnel of the stages found, the distributions of the
last stage's records and a browser over a sample of them (magpie.report_page). --pngs
also draws the older PNG plots and <stem>_report.md next to each record file given
(magpie.report.write_report) and prints their summary.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.records import InputError  # noqa: E402
from magpie.report import write_report  # noqa: E402
from magpie.report_data import DEFAULT_SAMPLE  # noqa: E402
from magpie.report_page import build_report  # noqa: E402
from magpie.stage import run_cli  # noqa: E402


def main(*paths: str, output: str | None = None, sample: int = DEFAULT_SAMPLE, pngs: bool = False):
    """Write the report page of PATHS (run folders or .json/.jsonl record files).

    Args:
      paths: run folders (every stage output in them) or record files.
      output: the page; default report.html in the first folder, or <stem>_report.html.
      sample: records the page lets you browse (counts use every record).
      pngs: also write PNG plots and <stem>_report.md beside each record file given.
    """
    if not paths:
        raise InputError("give a run folder or record files: python scripts/report.py PATH...")
    page = build_report(paths, output, sample)
    print(f"[report] wrote {page}")
    if pngs:
        for path in paths:
            if Path(path).is_dir():
                continue
            text, files = write_report(path)
            print(text)
            for f in files:
                print(f"[report] wrote {f}")


if __name__ == "__main__":
    run_cli(main)
