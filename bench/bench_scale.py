"""Benchmark: memory and time of the stages as the records grow (issue 25).

Makes N synthetic Magpie-shaped records (tagged, ~2.3 KB each as indented JSON; a share
in other languages), then runs each stage on them in its own process and prints its peak
RSS (VmHWM, read by that process as it ends) and seconds:

- concat: the tagged JSON array -> ShareGPT JSONL (`magpie.Concat`)
- filter: `--config fms-dgt` on the tagged records, plus a category cap and a shuffle
- language: unitag's language mission (lingua)
- gen_dis: near-duplicate search and the annotated output on PRECOMPUTED vectors (random
  unit vectors saved beside the input; the embedding model's speed is not measured here)
- po_pairs: gen_po_pairs on records with five scored responses each
- bookkeeping: gen_res's read -> journal -> finish path with the model replaced by a
  function that returns a fixed text (`FixedEngine`), so only the bookkeeping is measured

Each stage's output is removed once measured (a 10M-record input is ~17 GB of JSON).

    python bench/bench_scale.py --sizes 30000 300000 1000000 --out bench/RESULTS-scale.md
    python bench/bench_scale.py --sizes 10000000 --stages concat filter bookkeeping
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("concat", "filter", "language", "gen_dis", "po_pairs", "bookkeeping")
WORDS = (
    "model data answer question explain write code function list table number value "
    "story poem letter summary history science energy market price plan travel city "
    "water light music health sleep garden recipe budget email report python sort"
).split()
OTHER = {  # a few sentences per language, so the language mission has work to do
    "fr": "Pouvez-vous expliquer comment fonctionne la photosynthèse dans les plantes ?",
    "de": "Kannst du mir erklären, wie die Photosynthese in Pflanzen funktioniert?",
    "es": "¿Puedes explicarme cómo funciona la fotosíntesis en las plantas?",
    "zh": "你能解释一下植物的光合作用是如何进行的吗？",
    "ru": "Можешь объяснить, как работает фотосинтез у растений?",
}
CATEGORIES = ("Information seeking", "Math", "Coding & Debugging", "Creative writing", "Planning")
QUALITIES = ("very poor", "poor", "average", "good", "excellent")


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def tagged_record(i: int) -> dict:
    """One record as gen_res + unitag + gen_dis leave it (the original's fields)."""
    rng = random.Random(i)
    lang = rng.choice(list(OTHER)) if rng.random() < 0.2 else "en"
    instruction = OTHER[lang] if lang != "en" else text(rng, rng.randint(15, 60)).capitalize() + "?"
    response = text(rng, rng.randint(100, 200))
    return {
        "uuid": f"{i:08x}-0000-4000-8000-000000000000",
        "instruction": instruction,
        "response": response,
        "gen_input_configs": {"temperature": 1.0, "top_p": 1.0, "input_generator": "m", "seed": i},
        "gen_response_configs": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 4096},
        "intent": "The user wants to " + text(rng, 8),
        "knowledge": "To solve this problem, the models need to know " + text(rng, 8),
        "difficulty": rng.choice(("very easy", "easy", "medium", "hard", "very hard")),
        "input_quality": rng.choice(QUALITIES),
        "quality_explanation": "The query is " + text(rng, 20),
        "task_category": rng.choice(CATEGORIES),
        "other_task_category": [rng.choice(CATEGORIES)],
        "llama_guard_2": "safe",
        "instruct_reward": round(rng.uniform(-10, 10), 4),
        "sample_quality": rng.randint(1, 5),
        "language": lang.upper(),
        "min_neighbor_distance": round(rng.random(), 4),
        "repeat_count": rng.choice((0, 0, 0, 1)),
        "min_similar_uuid": None,
        "instruction_flag": None,
        "response_flag": None,
    }


def instruction_record(i: int) -> dict:
    """One record as gen_ins leaves it: the input of gen_res."""
    rng = random.Random(i)
    return {
        "instruction": text(rng, rng.randint(15, 60)).capitalize() + "?",
        "pre_query_template": "<|im_start|>user\n",
        "gen_input_configs": {"temperature": 1.0, "top_p": 1.0, "input_generator": "m", "seed": i},
        "instruction_flag": None,
    }


def scored_record(i: int) -> dict:
    """One record as gen_po_rewards leaves it: five responses and their rewards."""
    rng = random.Random(i)
    return {
        "instruction": text(rng, 30),
        "responses": [text(rng, 40) for _ in range(5)],
        "response_flags": [None] * 5,
        "rewards_armorm": [round(rng.uniform(-1, 1), 4) for _ in range(5)],
    }


def make_input(kind: str, n: int, path: Path) -> None:
    """Write n records of `kind` to `path` (.json array or .jsonl), unless there."""
    if path.exists():
        return
    from magpie.records import write_records

    make = {"tagged": tagged_record, "instructions": instruction_record, "scored": scored_record}
    start = time.time()
    write_records(path, (make[kind](i) for i in range(n)))
    print(
        f"made {path} ({n} records, {path.stat().st_size / 1e9:.2f} GB) in {time.time() - start:.0f} s"
    )


def make_vectors(n: int, path: Path, dim: int = 384) -> None:
    """Random unit vectors (float32, n x dim) with planted near copies, saved as .npy."""
    if path.exists():
        return
    import numpy as np

    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    rng = np.random.default_rng(0)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        block[1::10] = block[::10][: len(block[1::10])] + 0.01  # every 10th pair: a near copy
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    out.flush()


class FixedEngine:
    """The model of the bookkeeping run: every prompt's completion is one fixed text."""

    name = "fixed"
    response_mode = "template"

    def __init__(self) -> None:
        from magpie.models import load_tokenizer

        self.tokenizer = load_tokenizer(None)  # the embedded model's

    def stream(self, prompts, params, seeds):
        from magpie.engines.base import Completion

        text = "A fixed answer of a few words, the same for every prompt."
        for k in range(len(prompts)):
            yield k, [Completion(text=text, finish_reason="stop", completion_tokens=12)]


def run_stage(stage: str, work: Path, n: int) -> None:
    """Run one stage on the inputs of size n (in this process: the parent measures it)."""
    import magpie

    tagged = work / f"tagged_{n}.json"
    out = work / f"out_{stage}_{n}"
    if stage == "concat":
        magpie.Concat(input_files=[str(tagged)], output_file=str(out) + ".jsonl").run()
    elif stage == "filter":
        magpie.Filter(
            input_file=str(tagged),
            config="fms-dgt",
            max_per_category=n // 10,
            shuffle=True,
            output_file=str(out) + ".jsonl",
            rejected_file=str(out) + "_rejected.jsonl",
        ).run()
    elif stage == "language":
        copy = work / f"language_{n}.json"
        shutil.copyfile(tagged, copy)
        magpie.Unitag(input_file=str(copy), tag_mission="language", save_as="jsonl").run()
    elif stage == "gen_dis":
        from magpie.dedup import run_distance_on_vectors  # precomputed vectors

        run_distance_on_vectors(
            str(work / f"tagged_{n}.json"),
            str(work / f"vectors_{n}.npy"),
            str(out) + ".jsonl",
            progress=False,
        )
    elif stage == "po_pairs":
        magpie.GenPoPairs(input_file=str(work / f"scored_{n}.jsonl"), output_dir=str(out)).run()
    elif stage == "bookkeeping":
        from magpie.executor import LocalExecutor
        from magpie.models import canonical_name
        from magpie.profiles import get_profile
        from magpie.responses import ResponseJob

        engine = FixedEngine()
        name = canonical_name(None)
        step = ResponseJob(
            get_profile(name, engine.tokenizer),
            str(work / f"instructions_{n}.jsonl"),
            str(out) + ".jsonl",
            model_name=name,
            max_tokens=16,
        )
        LocalExecutor().run(step, lambda: engine)


def inputs_for(stage: str, work: Path, n: int) -> None:
    if stage in ("concat", "filter", "language", "gen_dis"):
        make_input("tagged", n, work / f"tagged_{n}.json")
    if stage == "gen_dis":
        make_vectors(n, work / f"vectors_{n}.npy")
    if stage == "po_pairs":
        make_input("scored", n, work / f"scored_{n}.jsonl")
    if stage == "bookkeeping":
        make_input("instructions", n, work / f"instructions_{n}.jsonl")


def peak_rss_kib() -> int:
    """This process's peak resident memory (KiB), from /proc: its own since exec (the
    rusage maxrss of a child also counts the parent's memory at the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(stage: str, work: Path, n: int) -> dict:
    """Run the stage in a child process; its seconds and peak RSS."""
    inputs_for(stage, work, n)
    cmd = [sys.executable, __file__, "--child", stage, "--work", str(work), "--sizes", str(n)]
    start = time.time()
    child = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    seconds = time.time() - start
    peaks = [line.split()[1] for line in child.stdout.splitlines() if line.startswith("VmHWM")]
    for leftover in work.glob(f"out_{stage}_{n}*"):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    for leftover in [*work.glob(f".magpie/out_{stage}_{n}*"), *work.glob(f".magpie/language_{n}*")]:
        leftover.unlink()
    (work / f"language_{n}.json").unlink(missing_ok=True)
    for leftover in work.glob(f"language_{n}*"):
        leftover.unlink()
    return {
        "stage": stage,
        "records": n,
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(int(peaks[-1]) / 1024) if peaks else None,
        "exit": child.returncode,
    }


def machine() -> str:
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return f"{platform.processor() or platform.machine()}, {cpus} cores, {mem:.0f} GiB, load {load:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30_000, 300_000, 1_000_000])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--work", type=Path, default=Path("/tmp/magpie-bench-scale"))
    parser.add_argument("--keep_inputs", action="store_true", help="keep the inputs made")
    parser.add_argument("--out", type=Path, help="append the table (markdown) here")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child:
        run_stage(args.child, args.work, args.sizes[0])
        print(f"VmHWM {peak_rss_kib()}")
        return
    rows = []
    print(f"machine: {machine()}")
    for n in args.sizes:
        for stage in args.stages:
            row = measure(stage, args.work, n)
            rows.append(row)
            print(json.dumps(row), flush=True)
        if not args.keep_inputs:
            for made in args.work.glob(f"*_{n}.*"):
                made.unlink()
    table = ["| stage | records | seconds | peak RSS MiB | exit |", "|---|---|---|---|---|"]
    table += [
        f"| {r['stage']} | {r['records']:,} | {r['seconds']} | {r['peak_rss_mib']} | {r['exit']} |"
        for r in rows
    ]
    print("\n".join(table))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(f"\n{machine()}; `{' '.join(sys.argv)}`\n\n" + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
