"""Response settings for the embedded default: which give usable records, at what speed.

Makes `--instructions` instructions as `scripts/magpie.sh` does on the embedded model
(top_p 0.9, temperature 1, max_tokens 256, seeded), then answers them under each setting
of the grid and reports, per setting: usable records (an unflagged instruction and an
unflagged, non-empty response with no template token), the flags, seconds, tokens/s and
mean response tokens. One process; the instructions are shared by every setting.

    python bench/sweep_responses.py --instructions 128
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from usable import judge  # noqa: E402  (bench/usable.py: what counts as usable)

from magpie.engines import EngineOptions  # noqa: E402
from magpie.instructions import InstructionJob  # noqa: E402
from magpie.models import DEFAULT_MODEL  # noqa: E402
from magpie.profiles import get_profile  # noqa: E402
from magpie.responses import ResponseJob  # noqa: E402

# (temperature, top_p, repetition_penalty, frequency_penalty, presence_penalty, max_tokens);
# the first is the original's (scripts/magpie.sh before: greedy, no penalty).
GRID = [
    (0.0, 1.0, 1.0, 0.0, 0.0, 512),
    (0.3, 0.9, 1.1, 0.0, 0.0, 512),
    (0.3, 0.9, 1.2, 0.0, 0.0, 512),
    (0.7, 0.9, 1.1, 0.0, 0.0, 512),
    (0.3, 0.9, 1.0, 0.3, 0.0, 512),
    (0.5, 0.9, 1.0, 0.2, 0.2, 512),
    (0.7, 0.9, 1.0, 0.3, 0.0, 512),
    (0.7, 0.9, 1.0, 0.6, 0.0, 512),
    (1.0, 0.9, 1.0, 0.3, 0.0, 512),
    (0.8, 0.95, 1.0, 0.4, 0.4, 512),
    (0.7, 0.9, 1.0, 0.0, 0.0, 512),
    (1.0, 0.9, 1.0, 0.0, 0.0, 512),
    (1.0, 0.9, 1.0, 0.6, 0.0, 512),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--grid", type=int, nargs="*", help="rows of GRID to run (default all)")
    args = parser.parse_args()
    options = EngineOptions()
    tokenizer = options.tokenizer("")
    profile = get_profile(DEFAULT_MODEL, tokenizer)
    engine = options.load("", seed=args.seed, tokenizer=tokenizer)
    specials = [t for t in tokenizer.all_special_tokens if t]
    tmp = Path(tempfile.mkdtemp(prefix="sweep_"))
    ins = tmp / "ins.json"
    InstructionJob(
        profile,
        ins,
        model_name=DEFAULT_MODEL,
        total_prompts=args.instructions,
        n=64,
        temperature=1.0,
        top_p=0.9,
        max_tokens=256,
        seed=args.seed,
    ).run(engine)
    print(
        "| temperature | top_p | repetition penalty | max_tokens | usable | flags | seconds "
        "| tok/s | mean response tokens |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in args.grid if args.grid else range(len(GRID)):
        temperature, top_p, penalty, frequency, presence, max_tokens = GRID[row]
        out = tmp / f"res_{row}.json"
        job = ResponseJob(
            profile,
            ins,
            out,
            model_name=DEFAULT_MODEL,
            temperature=temperature,
            top_p=top_p,
            repetition_penalty=penalty,
            frequency_penalty=frequency,
            presence_penalty=presence,
            max_tokens=max_tokens,
            seed=args.seed,
        )
        start = time.time()
        summary = job.run(engine)
        seconds = time.time() - start
        records = json.loads(out.read_text())
        good = sum(judge(r, specials, None)[0] for r in records)
        flags = Counter(r["response_flag"] or "-" for r in records if r.get("response_flag"))
        flags.update(f"ins {r['instruction_flag']}" for r in records if r["instruction_flag"])
        answered = [r for r in records if r.get("response") is not None]
        mean = sum(
            len(tokenizer.encode(r["response"], add_special_tokens=False)) for r in answered
        ) / max(1, len(answered))
        print(
            f"| {temperature} | {top_p} | {penalty} | {frequency} | {presence} | {max_tokens} | "
            f"{good}/{len(records)} ({100 * good / len(records):.0f}%) | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(flags.items())) or 'none'} | "
            f"{seconds:.0f} | {summary.tokens / seconds:.0f} | {mean:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
