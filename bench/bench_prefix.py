"""Shared-prefix reuse on the hf engine (issue 26): the tagging missions and the judge
with and without it, side by side in one process, runs alternating, labels compared.

What is timed is what `exp/unitag.py` and `gen_po_rewards --judge` run per batch:
`LLMTagger.tag` (the label read from the label tokens' probabilities, the free text
generated under the mission's schema) for `quality` and `sample_quality`, and
`JudgeScorer.scores` (rating probabilities only) for the judge. "full" switches the
reuse off (`HFEngine.min_shared_prefix = None`: every prompt prefilled whole, as before
issue 26); "reuse" starts each run with no prefix kept, so the prefill of the shared
prefix is in its time. Records: the first `--records` instructions of
bench/instructions.jsonl and the model's own greedy answers (bench_tagging.py's cache).

    python bench/bench_prefix.py --runs 3
    python bench/bench_prefix.py --runs 1 --dtype float32   # labels within 1e-4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODES = {"full": None, "reuse": 32}


def run_tagger(engine, mission: str, items) -> tuple[float, dict]:
    from magpie.tagging.llm import LLMTagger

    tagger = LLMTagger(engine, "smollm2", max_tokens=256, seed=0)
    start = time.perf_counter()
    out = {key: fields for key, fields, _ in tagger.tag(mission, items)}
    return time.perf_counter() - start, out


def run_judge(engine, items) -> tuple[float, dict]:
    from magpie.judge import JudgeScorer

    judge = JudgeScorer(engine, "")
    start = time.perf_counter()
    encoded = [judge.fit(conv)[0] for _, conv in items]
    out = dict(judge.scores(encoded))
    return time.perf_counter() - start, out


def differences(a: dict, b: dict) -> tuple[int, float]:
    """(records whose fields differ, largest difference of a number between them)."""
    changed, most = 0, 0.0
    for key in a:
        x, y = a[key], b[key]
        if x != y:
            changed += 1
        pairs = zip(x.values(), y.values(), strict=True) if isinstance(x, dict) else [(x, y)]
        for u, v in pairs:
            if isinstance(u, float) and isinstance(v, float):
                most = max(most, abs(u - v))
    return changed, most


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=32)
    ap.add_argument("--judge_records", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch
    from bench_tagging import records_with_responses

    from magpie.engines.hf import HFEngine
    from magpie.models import DEFAULT_MODEL
    from magpie.tagging.inputs import conversation_of

    engine = HFEngine(DEFAULT_MODEL, dtype=args.dtype, seed=0)
    records = records_with_responses(engine, max(args.records, args.judge_records))
    items = [(i, conversation_of(r)[0]) for i, r in enumerate(records)]
    jobs = {
        f"unitag quality ({args.records} records)": lambda: run_tagger(
            engine, "quality", items[: args.records]
        ),
        f"unitag sample_quality ({args.records} records)": lambda: run_tagger(
            engine, "sample_quality", items[: args.records]
        ),
        f"judge reward ({args.judge_records} responses)": lambda: run_judge(
            engine, items[: args.judge_records]
        ),
    }
    seconds = {(job, mode): [] for job in jobs for mode in MODES}
    outputs = {}
    for _ in range(args.runs):
        for job, run in jobs.items():
            for mode, minimum in MODES.items():
                engine.min_shared_prefix, engine._prefixes = minimum, []
                took, outputs[job, mode] = run()
                seconds[job, mode].append(took)
                print(json.dumps({"job": job, "mode": mode, "seconds": round(took, 2)}), flush=True)
    lines = [
        "| job | full prefill (s) | shared prefix reused (s) | speed-up | records differing | "
        "largest number difference |",
        "|---|---|---|---|---|---|",
    ]
    for job in jobs:
        full = statistics.median(seconds[job, "full"])
        reuse = statistics.median(seconds[job, "reuse"])
        changed, most = differences(outputs[job, "full"], outputs[job, "reuse"])
        lines.append(
            f"| {job} | {full:.1f} | {reuse:.1f} | {full / reuse:.2f}x "
            f"| {changed}/{len(outputs[job, 'full'])} | {most:.2g} |"
        )
    load = os.getloadavg()
    report = (
        f"    python bench/bench_prefix.py --runs {args.runs} --dtype {args.dtype}\n\n"
        f"Machine: {os.cpu_count()} cores ({platform.machine()}), load {load[0]:.1f}/"
        f"{load[1]:.1f}/{load[2]:.1f} at the end; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; SmolLM2-135M-Instruct {args.dtype}, hf "
        f"engine; medians of {args.runs} alternating runs.\n\n" + "\n".join(lines) + "\n"
    )
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
