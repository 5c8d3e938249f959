"""Tagging on the embedded model (SmolLM2-135M-Instruct, bf16, hf engine, CPU):
records/s per mission, and how many answers are valid JSON with valid labels, with and
without constrained decoding.

Records: the first `--records` instructions of bench/instructions.jsonl, answered once by
the same model (greedy, 128 tokens; cached in bench/out/, not timed). Each LLM mission
runs through `LLMTagger` exactly as `exp/unitag.py` runs it (one retry for failures);
"first try" counts the answers of the first pass only. Without constrained decoding the
engine ignores the schema and the prompt is prefilled with "{" (the original's method).
Language runs lingua (cold: including loading its models; warm: a second pass).

    python bench/bench_tagging.py --records 32 --out bench/RESULTS-tagging.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve().parent
LLM_MISSIONS = ("difficulty", "quality", "sample_quality", "classification", "safety")


def records_with_responses(engine, count: int) -> list[dict]:
    """Instructions and the model's own answers (cached: generation is not measured)."""
    from magpie.chat_template import chat_prompt
    from magpie.engines.base import SamplingParams

    cache = HERE / "out" / f"tagging_records_{count}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from magpie.records import read_records

    instructions = [r["instruction"] for r in read_records(HERE / "instructions.jsonl")[:count]]
    prompts = [
        chat_prompt(engine.tokenizer, [{"role": "user", "content": q}]) for q in instructions
    ]
    params = SamplingParams(temperature=0.0, max_tokens=128, stop_token_ids=[2])
    answers = engine.generate(prompts, params)
    records = [
        {"instruction": q, "response": a[0].text.strip()}
        for q, a in zip(instructions, answers, strict=True)
    ]
    cache.parent.mkdir(exist_ok=True)
    cache.write_text(json.dumps(records, ensure_ascii=False, indent=1))
    return records


def run_mission(engine, mission: str, items, max_tokens: int, constrained: bool) -> dict:
    from magpie.tagging.llm import LLMTagger

    class CountingTagger(LLMTagger):
        """Keeps the outcome of every answer read (first pass, then retries)."""

        outcomes: list = []

        def _read(self, mission, c):
            fields, reason = super()._read(mission, c)
            self.outcomes.append(reason)
            return fields, reason

    engine.supports_json_schema = constrained
    tagger = CountingTagger(engine, "smollm2", max_tokens=max_tokens, seed=0)
    tagger.outcomes = []
    start = time.time()
    results = list(tagger.tag(mission, items))
    seconds = time.time() - start
    first = tagger.outcomes[: len(items)]
    parsed = [r is None or r.startswith("invalid_label") for r in first]
    return {
        "mission": mission,
        "constrained": constrained,
        "records": len(items),
        "seconds": round(seconds, 1),
        "records_per_s": round(len(items) / seconds, 2),
        "tok_per_s": round(tagger.tokens / seconds, 1),
        "json_first": sum(parsed),
        "labels_first": sum(r is None for r in first),
        "retried": len(tagger.outcomes) - len(items),
        "tagged": sum(reason is None for _, _, reason in results),
    }


def run_language(records: list[dict]) -> list[dict]:
    from magpie.tagging.language import detect_languages

    texts = [r["instruction"] for r in records]
    rows = []
    for label, batch in (("cold", texts), ("warm", texts * 100)):
        start = time.time()
        found = detect_languages(batch)
        seconds = time.time() - start
        rows.append(
            {
                "mission": f"language ({label})",
                "records": len(batch),
                "seconds": round(seconds, 2),
                "records_per_s": round(len(batch) / seconds, 1),
                "detected": sum(x is not None for x in found),
            }
        )
    return rows


def machine() -> str:
    from importlib.metadata import version

    import torch
    import transformers

    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the end; "
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"xgrammar {version('xgrammar')}, lingua {version('lingua-language-detector')}"
    )


def table(rows: list[dict]) -> str:
    head = (
        "| mission | decoding | records | seconds | records/s | tok/s | valid JSON, first try "
        "| valid labels, first try | retried | tagged after retry |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['mission']} | {'constrained' if r['constrained'] else 'free + prefill'} "
        f"| {r['records']} | {r['seconds']} | {r['records_per_s']} | {r['tok_per_s']} "
        f"| {r['json_first']}/{r['records']} | {r['labels_first']}/{r['records']} "
        f"| {r['retried']} | {r['tagged']}/{r['records']} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=32)
    ap.add_argument("--max_tokens", type=int, default=256)
    ap.add_argument("--missions", nargs="*", default=list(LLM_MISSIONS))
    ap.add_argument("--unconstrained", nargs="*", default=["quality", "classification"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from magpie.engines.hf import HFEngine
    from magpie.models import DEFAULT_MODEL
    from magpie.tagging.inputs import conversation_of

    torch.manual_seed(0)
    engine = HFEngine(DEFAULT_MODEL, batch_size=args.records, seed=0)
    records = records_with_responses(engine, args.records)
    items = [(i, conversation_of(r)[0]) for i, r in enumerate(records)]
    rows = []
    for mission in args.missions:
        for constrained in (True, False):
            if constrained or mission in args.unconstrained:
                rows.append(run_mission(engine, mission, items, args.max_tokens, constrained))
                print(json.dumps(rows[-1]), flush=True)
    language = run_language(records)
    for row in language:
        print(json.dumps(row), flush=True)
    report = (
        "## Tagging (`exp/unitag.py`) on the embedded model, hf engine\n\n"
        "```bash\n"
        f"python bench/bench_tagging.py --records {args.records} --max_tokens {args.max_tokens}"
        + (f" --threads {args.threads}" if args.threads else "")
        + f" --missions {' '.join(args.missions)} --unconstrained {' '.join(args.unconstrained)}\n"
        "```\n\n"
        f"Machine: {machine()}; {torch.get_num_threads()} torch threads.\n\n"
        f"SmolLM2-135M-Instruct (bf16), hf engine, {args.records} rows decoded together, "
        f"greedy, max_tokens {args.max_tokens}, {args.records} records (instruction + the "
        "model's own answer).\n\n"
        + table(rows)
        + "\n| language | records | seconds | records/s | detected |\n|---|---|---|---|---|\n"
        + "\n".join(
            f"| {r['mission']} | {r['records']} | {r['seconds']} | {r['records_per_s']} "
            f"| {r['detected']}/{r['records']} |"
            for r in language
        )
        + "\n"
    )
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
