"""The report page: one self-contained HTML file that opens offline.

The page's script and style are package data (magpie/report_assets), inlined; the data is
JSON in a `<script type="application/json">` element that the script reads with
JSON.parse and inserts as text only. Record text can hold anything (`</script>`,
`onerror=`, U+2028), so the JSON escapes `<`, `>`, `&` and U+2028/U+2029, and a strict
Content-Security-Policy allows only this page's own script and style (by their SHA-256):
nothing a record holds can run, load or be fetched.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from magpie.records import write_text
from magpie.report_data import DEFAULT_SAMPLE, collect

_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def embedded_json(value) -> str:
    """JSON that cannot end its script element or break a parser: `<`, `>`, `&` and the
    line separators as \\u escapes (JSON's own syntax never uses them outside strings)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in _ESCAPES.items():
        text = text.replace(char, escape)
    return text


def csp_hash(text: str) -> str:
    """The CSP source that allows exactly this inline script or style."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def asset(name: str) -> str:
    return resources.files("magpie").joinpath("report_assets", name).read_text(encoding="utf-8")


def render(data: dict) -> str:
    """The page's HTML for the data `collect` gathered."""
    script, style = asset("page.js"), asset("page.css")
    policy = (
        f"default-src 'none'; script-src {csp_hash(script)}; style-src {csp_hash(style)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    title = html.escape(f"Magpie report: {data['title']}")
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{title}</title>\n<style>{style}</style>\n</head>\n<body>\n"
        "<noscript>This report draws itself with JavaScript.</noscript>\n"
        f'<script type="application/json" id="data">{embedded_json(data)}</script>\n'
        f"<script>{script}</script>\n</body>\n</html>\n"
    )


def default_output(paths: list[Path]) -> Path:
    """report.html in the (first) folder given, or beside the first file."""
    first = paths[0]
    return first / "report.html" if first.is_dir() else first.with_name(first.stem + "_report.html")


def build_report(
    paths: Iterable[str | os.PathLike],
    output: str | os.PathLike | None = None,
    sample: int = DEFAULT_SAMPLE,
) -> Path:
    """Write the report page for the run folders or record files at `paths`; return its
    path. InputError when no records file is found or one cannot be read."""
    paths = [Path(p) for p in paths]
    data = collect(paths, sample=sample)
    out = Path(output) if output else default_output(paths)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, render(data))
    return out
