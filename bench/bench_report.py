"""Benchmark of the report page (magpie report) at scale: build it from N synthetic records
with every field the full pipeline writes, then time opening it in headless chromium
until the page says it has drawn itself (body data-ready="1").

    python bench/bench_report.py --n 1000000 [--sample 5000] [--keep DIR]

--keep DIR keeps the records there, and a later run with the same DIR reuses them.
Prints the records file size, the page size, the sample size, the build seconds (one
streaming pass over every record) and the open seconds (navigation to ready, three
loads, each in a fresh tab of one browser).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "report"))

from magpie.labels import DIFFICULTY, INPUT_QUALITY, TASK_CATEGORIES  # noqa: E402
from magpie.report_page import build_report  # noqa: E402

WORDS = (
    "explain the difference between how why what write a short story about magpies "
    "python function sort list compute average prime numbers climate history of rome "
    "recipe for bread plan a trip to japan summarize this article translate into french "
    "debug my code error message quantum physics stock market budget email to my boss"
).split()


def text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi))).capitalize() + "."


def record(i: int, rng: random.Random) -> dict:
    """One record as filter's input holds it: ShareGPT turns, tags, reward, distance."""
    group = i - i % 4 if rng.random() < 0.1 else i
    return {
        "conversation_id": f"magpie_{i}",
        "conversations": [
            {"from": "human", "value": text(rng, 5, 40)},
            {"from": "gpt", "value": text(rng, 20, 160)},
        ],
        "task_category": rng.choice(TASK_CATEGORIES),
        "other_task_category": [],
        "intent": "The user wants to " + text(rng, 3, 10),
        "knowledge": "To solve this problem, the models need to know " + text(rng, 3, 10),
        "difficulty": rng.choice((*DIFFICULTY, None)),
        "difficulty_confidence": round(rng.random(), 3),
        "input_quality": rng.choice(INPUT_QUALITY),
        "input_quality_confidence": round(rng.random(), 3),
        "quality_explanation": text(rng, 10, 30),
        "instruct_reward": round(rng.gauss(0, 4), 3),
        "llama_guard_2": rng.choice(("safe", "safe", "safe", "unsafe\nS2")),
        "language": rng.choice(("EN", "EN", "EN", "FR", "DE", "ZH", "ES")),
        "min_neighbor_distance": round(rng.random() ** 2, 4),
        "repeat_count": 3 if group != i else 0,
        "min_similar_conversation_id": f"magpie_{group}" if group != i else None,
        "instruction_flag": None if rng.random() > 0.02 else "unfinished",
        "response_flag": None if rng.random() > 0.03 else "truncated",
    }


def make_records(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(record(i, rng)) + "\n")


def open_seconds(page: Path, loads: int = 3) -> list[float]:
    """Seconds from navigation to the page's ready mark, each load in a new tab."""
    from report_browser import console_errors, load, open_browser

    driver = open_browser()
    times = []
    try:
        for _ in range(loads):
            driver.switch_to.new_window("tab")
            start = time.perf_counter()
            load(driver, page, timeout=120)
            times.append(time.perf_counter() - start)
        errors = console_errors(driver)
        assert not errors, errors
    finally:
        driver.quit()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=5000)
    parser.add_argument("--keep", help="make the files in this folder and keep them")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench_report_"))
    folder.mkdir(parents=True, exist_ok=True)
    records = folder / "synthetic_distance.jsonl"
    if args.keep and records.is_file():  # a --keep folder's records, made by an earlier run
        print(f"reusing {records} (records made by an earlier run with --keep)")
    else:
        start = time.perf_counter()
        make_records(records, args.n)
        print(f"made {args.n:,} records in {time.perf_counter() - start:.1f} s: {records}")
    start = time.perf_counter()
    page = build_report([records], folder / f"report_{args.sample}.html", sample=args.sample)
    build = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    opens = open_seconds(page)
    data_mb = records.stat().st_size / 1e6
    page_mb = page.stat().st_size / 1e6
    print(
        f"records: {args.n:,} ({data_mb:,.0f} MB) | page: {page_mb:.1f} MB, sample "
        f"{args.sample:,} | build: {build:.1f} s (peak RSS {peak:,.0f} MB) | open: "
        + ", ".join(f"{t:.2f}" for t in opens)
        + " s"
    )
    if not args.keep:
        records.unlink()


if __name__ == "__main__":
    main()
