"""Skills generation settings for the embedded default: which give usable items.

Runs the skills builder (generation only: questions, question judge, answers; no tagging)
of the shipped task files on the embedded model under each setting of the grid and
reports, per task and setting: questions sampled, well-formed questions (one line, 15-300
characters, ending with "?", not a copy of a seed or of another question), questions the
judge kept, finished answers, answers that are not the question repeated, items kept,
and seconds. Every kept item is printed, to be read.

    python bench/sweep_skills.py                 # every row of GRID, both shipped tasks
    python bench/sweep_skills.py --grid 0 2 --tasks tasks/skills_freeform.yaml

The layout before this sweep (one prompt asking for N "### Question N:" blocks, answers
with one example) is measured by running `python exp/run_task.py --task-paths ...` on
that commit and reading its generation_rejected.jsonl with `--read_rejected FILE`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from magpie.engines import EngineOptions  # noqa: E402
from magpie.models import DEFAULT_MODEL  # noqa: E402
from magpie.profiles import get_profile  # noqa: E402
from magpie.skills import SkillsBuilder  # noqa: E402
from magpie.tasks import load_task  # noqa: E402

# (temperature, top_p, answers' frequency penalty, questions decoded to a JSON schema)
GRID = [
    (0.7, 0.95, 0.3, True),  # the builder's defaults
    (0.7, 0.95, 0.3, False),
    (1.0, 0.95, 0.3, True),
    (0.7, 0.95, 0.0, True),
]


def well_formed(question: str, seen: set[str]) -> bool:
    q = question.strip()
    ok = "\n" not in q and 15 <= len(q) <= 300 and q.endswith("?") and q.lower() not in seen
    seen.add(q.lower())
    return ok


def echoes(question: str, answer: str) -> bool:
    a, q = answer.strip().lower(), question.strip().lower()
    return not a or a == q or a.startswith(q)


def measure(task: dict, builder: SkillsBuilder, items, seconds: float) -> dict:
    """The figures of one run from its counts, kept items and rejections."""
    steps = builder.steps()
    g = "grounded_" if builder.grounded else ""
    seen = {s["question"].strip().lower() for s in task["seed_examples"]}
    questions = [it.question for it in items]
    questions += [r["question"] for r in builder.rejected if r.get("question")]
    answered = [(it.question, it.answer) for it in items]
    answered += [(r["question"], r["answer"]) for r in builder.rejected if r.get("answer")]
    return {
        "contexts": steps.get("generate_context", {}).get("kept"),
        "sampled": steps[f"generate_{g}questions"]["made"],
        "well_formed": sum(well_formed(q, seen) for q in questions),
        "judge_kept": steps[f"validate_{g}question"]["kept"],
        "answers_finished": steps[f"generate_{g}answer"]["kept"],
        "not_echo": sum(not echoes(q, a or "") for q, a in answered),
        "kept": len(items),
        "seconds": round(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks",
        nargs="*",
        default=[
            str(REPO / "tasks/skills_freeform.yaml"),
            str(REPO / "tasks/skills_grounded.yaml"),
        ],
    )
    parser.add_argument("--grid", type=int, nargs="*", help="rows of GRID to run (default all)")
    parser.add_argument("--read_rejected", help="only summarise a run's generation_rejected.jsonl")
    args = parser.parse_args()
    if args.read_rejected:
        rows = [json.loads(line) for line in open(args.read_rejected, encoding="utf-8")]
        seen: set[str] = set()
        questions = [r["question"] for r in rows if r.get("question")]
        answers = [r for r in rows if r.get("answer")]
        print(
            json.dumps(
                {
                    "rejected": len(rows),
                    "questions": len(questions),
                    "well_formed": sum(well_formed(q, seen) for q in questions),
                    "answers": len(answers),
                    "not_echo": sum(not echoes(r["question"], r["answer"]) for r in answers),
                }
            )
        )
        return
    options = EngineOptions(batch_size=32)
    tokenizer = options.tokenizer("")
    profile = get_profile(DEFAULT_MODEL, tokenizer)
    engine = options.load("", tokenizer=tokenizer, seed=0)
    for row in args.grid if args.grid is not None else range(len(GRID)):
        temperature, top_p, penalty, schema = GRID[row]
        for path in args.tasks:
            task = load_task(path)
            builder = SkillsBuilder(
                engine,
                profile,
                task,
                seed=task.get("seed", 0),
                temperature=temperature,
                top_p=top_p,
                max_tokens=task.get("max_tokens", 512),
                frequency_penalty=penalty,
                model_name=DEFAULT_MODEL,
            )
            builder.constrained = builder.constrained and schema
            start = time.time()
            items = builder.run(
                int(task.get("num_samples", 10)), int(task.get("max_iterations", 5))
            )
            figures = measure(task, builder, items, time.time() - start)
            print(
                json.dumps({"row": row, "setting": GRID[row], "task": task["task_name"], **figures})
            )
            for it in items:
                print("   Q:", it.question.replace("\n", " "))
                print("   A:", (it.answer or "").replace("\n", " ")[:300])
            sys.stdout.flush()


if __name__ == "__main__":
    main()
