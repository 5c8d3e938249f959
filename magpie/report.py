"""Plots and a short summary of a tagged dataset, for people who would rather look than read.

One module for demo.ipynb and scripts/report.py: task categories, difficulty and input
quality (label counts in the vocabulary's order, untagged records shown as such, never
dropped), the nearest-neighbour distance histogram (gen_dis's `min_neighbor_distance`,
with its near-duplicate threshold) and response lengths (characters, as the original's
`response_length`). A plot whose field no record has is left out and said so.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from magpie.dedup import DEFAULT_THRESHOLD
from magpie.filters import response_length
from magpie.labels import DIFFICULTY, INPUT_QUALITY, TASK_CATEGORIES
from magpie.records import read_records
from magpie.sharegpt import canonical_label, conversations_of

UNTAGGED = "(untagged)"
LABEL_FIELDS = {
    "task_category": ("Task categories", TASK_CATEGORIES),
    "difficulty": ("Difficulty", DIFFICULTY),
    "input_quality": ("Input quality", INPUT_QUALITY),
}


def label_counts(records: list[dict], field: str, vocab: tuple[str, ...]) -> dict[str, int]:
    """Counts per label in vocabulary order (zeros too); values outside it and nulls count
    as untagged, shown only when there are some."""
    counts = Counter(canonical_label(r.get(field), vocab) or UNTAGGED for r in records)
    out = {label: counts[label] for label in vocab}
    if counts[UNTAGGED]:
        out[UNTAGGED] = counts[UNTAGGED]
    return out


def has_response(record: dict) -> bool:
    if isinstance(record.get("response"), str):
        return True
    try:
        return any(t["from"] == "gpt" for t in conversations_of(record))
    except ValueError:
        return False


def response_lengths(records: list[dict]) -> list[int]:
    """Characters of each response; records without one are left out."""
    return [response_length(r) for r in records if has_response(r)]


def neighbor_distances(records: list[dict]) -> list[float]:
    return [
        float(r["min_neighbor_distance"])
        for r in records
        if isinstance(r.get("min_neighbor_distance"), (int, float))
    ]


def _has(records: list[dict], field: str) -> bool:
    return any(field in r for r in records)


def plot_labels(records: list[dict], field: str, ax=None):
    """Horizontal bars: how many records carry each label of `field`."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    title, vocab = LABEL_FIELDS[field]
    counts = label_counts(records, field, vocab)
    ax = ax or plt.subplots(figsize=(6, 0.35 * len(counts) + 1.2))[1]
    labels = list(counts)[::-1]
    ax.barh(labels, [counts[x] for x in labels], color="tab:blue")
    ax.set_title(f"{title} ({len(records)} records)")
    ax.set_xlabel("records")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return ax


def plot_neighbor_distances(
    records: list[dict], ax=None, threshold: float = DEFAULT_THRESHOLD, bins: int = 30
):
    """Histogram of the distance to the nearest other record; left of the line are the
    near-duplicates."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    values = neighbor_distances(records)
    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    ax.hist(values, bins=bins, color="tab:green")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
    close = sum(v < threshold for v in values)
    ax.set_title(f"Nearest-neighbour distance ({close} of {len(values)} below threshold)")
    ax.set_xlabel("min_neighbor_distance (squared L2, unit embeddings)")
    ax.set_ylabel("records")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    return ax


def plot_response_lengths(records: list[dict], ax=None, bins: int = 30):
    """Histogram of response lengths in characters."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    values = response_lengths(records)
    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    ax.hist(values, bins=bins, color="tab:purple")
    ax.set_title(f"Response length ({len(values)} responses)")
    ax.set_xlabel("characters")
    ax.set_ylabel("records")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return ax


def plots(records: list[dict]) -> dict[str, Callable]:
    """The plots this dataset has data for: name → function(ax) drawing it."""
    out: dict[str, Callable] = {}
    for field in LABEL_FIELDS:
        if _has(records, field):
            out[field] = lambda ax, f=field: plot_labels(records, f, ax)
    if neighbor_distances(records):
        out["min_neighbor_distance"] = lambda ax: plot_neighbor_distances(records, ax)
    if response_lengths(records):
        out["response_length"] = lambda ax: plot_response_lengths(records, ax)
    return out


def summary(records: list[dict]) -> str:
    """A few lines: size, the commonest labels, near-duplicates, response lengths, and
    the plots that have no data."""
    import statistics

    lines = [f"records: {len(records)}"]
    for field, (title, vocab) in LABEL_FIELDS.items():
        if not _has(records, field):
            lines.append(f"{title.lower()}: no `{field}` field")
            continue
        counts = label_counts(records, field, vocab)
        top = [kv for kv in sorted(counts.items(), key=lambda kv: -kv[1]) if kv[1]][:3]
        lines.append(f"{title.lower()}: " + ", ".join(f"{k} {v}" for k, v in top))
    distances = neighbor_distances(records)
    if distances:
        close = sum(d < DEFAULT_THRESHOLD for d in distances)
        lines.append(
            f"near-duplicates: {close} of {len(distances)} records have a neighbour closer "
            f"than {DEFAULT_THRESHOLD:g}; median distance {statistics.median(distances):.3f}"
        )
    else:
        lines.append("near-duplicates: no `min_neighbor_distance` field (run gen_dis.py)")
    lengths = response_lengths(records)
    if lengths:
        lines.append(
            f"responses: {len(lengths)}, median {statistics.median(lengths):.0f} characters, "
            f"longest {max(lengths)}"
        )
    else:
        lines.append("responses: none")
    return "\n".join(lines)


def write_report(input_file: str | os.PathLike, out_dir: str | os.PathLike | None = None):
    """One PNG per plot (<stem>_<plot>.png) and <stem>_report.md next to the input (or in
    `out_dir`); returns the summary text and the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(input_file)
    records = read_records(path)
    folder = Path(out_dir) if out_dir else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in plots(records).items():
        fig, ax = plt.subplots(figsize=(6.5, 4))
        draw(ax)
        fig.tight_layout()
        png = folder / f"{path.stem}_{name}.png"
        fig.savefig(png, dpi=110)
        plt.close(fig)
        written.append(png)
    text = summary(records)
    md = folder / f"{path.stem}_report.md"
    images = "\n".join(f"![{p.stem}]({p.name})" for p in written)
    md.write_text(f"# {path.name}\n\n```\n{text}\n```\n\n{images}\n", encoding="utf-8")
    return text, [*written, md]
