"""The Ray executor's overhead against the local executor on the same job.

Answers the instructions of bench/instructions.jsonl with the embedded model (gen_res,
seeded sampling) three ways: the local executor; the Ray executor with one replica that
has the same CPUs (the overhead: records/s ratio, target >= 0.9); and, for scale, two
replicas of one CPU each. Each executor first runs a warm-up job (model load, cluster
start), then the timed job on the same loaded model(s); the summary's records/s of the
timed job is compared. One process, one local Ray cluster on 127.0.0.1.

    python bench/bench_ray.py --records 64 --max_tokens 128
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.engines import EngineOptions  # noqa: E402
from magpie.executor import LocalExecutor  # noqa: E402
from magpie.models import DEFAULT_MODEL  # noqa: E402
from magpie.profiles import get_profile  # noqa: E402
from magpie.ray_executor import RayExecutor  # noqa: E402
from magpie.records import read_records  # noqa: E402
from magpie.responses import ResponseJob  # noqa: E402

HERE = Path(__file__).resolve().parent


def job(profile, src: Path, out: Path, max_tokens: int) -> ResponseJob:
    return ResponseJob(
        profile,
        src,
        out,
        model_name=DEFAULT_MODEL,
        temperature=0.7,
        top_p=0.9,
        max_tokens=max_tokens,
        seed=1,
    )


def timed(executor, load, profile, src: Path, warm: Path, folder: Path, max_tokens: int):
    """(seconds, records, tokens) of the timed job, after a warm-up job on `warm`."""
    executor.run(job(profile, warm, folder / "warm_res.json", max_tokens), load)
    start = time.time()
    summary = executor.run(job(profile, src, folder / "res.json", max_tokens), load)
    return time.time() - start, summary.records_out, summary.tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--max_tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="CPUs of the local run")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    options = EngineOptions()
    tokenizer = options.tokenizer("")
    profile = get_profile(DEFAULT_MODEL, tokenizer)
    rows = read_records(HERE / "instructions.jsonl")[: args.records]
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    src, warm = tmp / "ins.jsonl", tmp / "warm.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    warm.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    load = functools.partial(options.load, "", seed=1)
    results = []
    runs = [
        ("local", LocalExecutor(), args.threads),
        ("ray, 1 replica", RayExecutor(num_replicas=1, cpus_per_replica=args.threads), 1),
        ("ray, 2 replicas", RayExecutor(num_replicas=2, cpus_per_replica=1), 2),
    ]
    for name, executor, _ in runs:
        folder = tmp / name.replace(" ", "").replace(",", "_")
        folder.mkdir()
        seconds, records, tokens = timed(
            executor, load, profile, src, warm, folder, args.max_tokens
        )
        executor.close()
        results.append((name, records, seconds, tokens))
    base = results[0][1] / results[0][2]
    print("| executor | records | seconds | records/s | tok/s | vs local |")
    print("|---|---|---|---|---|---|")
    for name, records, seconds, tokens in results:
        rate = records / seconds
        print(
            f"| {name} | {records} | {seconds:.1f} | {rate:.2f} | {tokens / seconds:.0f} "
            f"| {rate / base:.2f} |"
        )


if __name__ == "__main__":
    main()
