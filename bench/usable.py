"""Usable share of a generating stage's output on the embedded model (issue 16's measure).

A record is usable when its instruction is unflagged and every generated text is unflagged,
non-empty and free of the tokenizer's special tokens (template markers):
- gen_res: `response`;
- gen_po_multi_res: every one of `responses` (also reported per response);
- gen_mt / gen_conv: every turn of `conversation`, which did not stop early
  (`conversation_stop_reason` null) and has `--turns` turns (system excluded) when given.

    python bench/usable.py OUTPUT.json [--turns 4]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.models import load_tokenizer  # noqa: E402
from magpie.records import read_records  # noqa: E402


def clean(text, specials: list[str]) -> bool:
    return bool(text and text.strip()) and not any(s in text for s in specials)


def judge(record: dict, specials: list[str], turns: int | None) -> tuple[bool, list[str]]:
    """(usable, why not) of one record."""
    why = []
    if record.get("instruction_flag"):
        why.append(f"instruction {record['instruction_flag']}")
    if "conversation" in record:
        if record.get("conversation_stop_reason"):
            why.append(record["conversation_stop_reason"])
        said = [m for m in record["conversation"] if m["role"] != "system"]
        if turns is not None and len(said) != turns:
            why.append(f"{len(said)} turns")
        why += [f"{m['role']} turn not clean" for m in said if not clean(m["content"], specials)]
    elif "responses" in record:
        if record.get("response_flag"):
            why.append(f"response {record['response_flag']}")
        texts = record.get("responses") or []
        flags = record.get("response_flags") or []
        why += [f"response {f}" for f in flags if f]
        why += ["response not clean" for t in texts if not clean(t, specials)]
    else:
        if record.get("response_flag"):
            why.append(f"response {record['response_flag']}")
        elif not clean(record.get("response"), specials):
            why.append("response not clean")
    return not why, why


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--turns", type=int, help="turns a conversation must have")
    args = parser.parse_args()
    tokenizer = load_tokenizer("")
    specials = [t for t in tokenizer.all_special_tokens if t]
    records = read_records(args.output)
    causes: Counter = Counter()
    good = 0
    for r in records:
        ok, why = judge(r, specials, args.turns)
        good += ok
        causes.update(set(why))
    line = f"usable {good}/{len(records)} ({100 * good / len(records):.0f}%)"
    if records and "responses" in records[0]:
        texts = [
            (t, f)
            for r in records
            for t, f in zip(r.get("responses") or [], r.get("response_flags") or [], strict=True)
        ]
        per = sum(1 for t, f in texts if not f and clean(t, specials))
        line += f"; responses usable {per}/{len(texts)} ({100 * per / len(texts):.0f}%)"
    print(line + "; " + ", ".join(f"{k} {v}" for k, v in causes.most_common()))


if __name__ == "__main__":
    main()
