"""Speed of each exact and non-exact hf setting on the instruction job (issue 23).

The job is bench_generation.py's: the embedded model's pre-query template, temperature 1,
top_p 0.9, max_tokens 128, stop at a newline, batch 64, keyed seeds. Settings:

- bf16-invariant  bfloat16, batch-invariant attention (the default; exact)
- bf16-sdpa       bfloat16, --batch_invariant False (transformers' SDPA; not exact)
- fp32            float32 (transformers' SDPA; exact in the records measured)

Each run is its own process; the settings are interleaved, `--repeats` times, and the
median useful tok/s of each is reported (the machine is shared: say its load).

    python bench/bench_exactness.py --ins_prompts 128 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SETTINGS = {
    "bf16-invariant": {"dtype": "bfloat16", "batch_invariant": None},
    "bf16-sdpa": {"dtype": "bfloat16", "batch_invariant": False},
    "fp32": {"dtype": "float32", "batch_invariant": None},
}


def run_setting(setting: str, prompts: int, seed: int) -> dict:
    from bench.bench_generation import BATCH, instruction_params, result_row
    from magpie.engines.base import item_seeds
    from magpie.engines.hf import HFEngine
    from magpie.models import DEFAULT_MODEL
    from magpie.profiles import get_profile

    engine = HFEngine(DEFAULT_MODEL, batch_size=BATCH, seed=seed, **SETTINGS[setting])
    profile = get_profile(DEFAULT_MODEL, engine.tokenizer)
    params = instruction_params(profile, seed)
    seeds = item_seeds(seed, "gen_ins", range(prompts), 1)
    start = time.perf_counter()
    results = engine.generate([profile.pre_query_template] * prompts, params, seeds)
    seconds = time.perf_counter() - start
    tok = engine.tokenizer
    useful = sum(len(tok.encode(c.text, add_special_tokens=False)) for (c,) in results)
    row = result_row(setting, len(results), useful, seconds)
    row["exact"] = engine.exact
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--setting", choices=list(SETTINGS))
    ap.add_argument("--ins_prompts", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.setting:
        print(json.dumps(run_setting(args.setting, args.ins_prompts, args.seed)))
        return
    rows: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for _ in range(args.repeats):
        for setting in SETTINGS:  # interleaved: the machine's load hits every setting
            cmd = [sys.executable, __file__, "--setting", setting]
            cmd += ["--ins_prompts", str(args.ins_prompts), "--seed", str(args.seed)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            row["load"] = round(os.getloadavg()[0], 1)
            rows[setting].append(row)
            print(row, file=sys.stderr)
    print("| setting | exact | runs | useful tok/s (median) | all runs | load (1 min) |")
    print("|---|---|---|---|---|---|")
    medians = {}
    for setting, runs in rows.items():
        rates = [r["useful_tok_per_s"] for r in runs]
        medians[setting] = statistics.median(rates)
        print(
            f"| {setting} | {'yes' if runs[0]['exact'] else 'no'} | {len(runs)} | "
            f"{medians[setting]} | {', '.join(map(str, rates))} | "
            f"{', '.join(str(r['load']) for r in runs)} |"
        )
    ratio = medians["bf16-invariant"] / medians["bf16-sdpa"]
    print(
        f"\nbf16-invariant / bf16-sdpa = {ratio:.2f}x; / fp32 = "
        f"{medians['bf16-invariant'] / medians['fp32']:.2f}x"
    )


if __name__ == "__main__":
    main()
