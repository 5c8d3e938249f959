"""Seed-driven skills generation (InstructLab "skills", as fms-dgt runs it) on our engines.

Without context, per iteration:
  1. questions: an in-context prompt of seed questions asks for N new ones ("### Question
     N:" blocks, parsed leniently);
  2. question validation: an LLM judge rates each 0/1; kept only at 1;
  3. answers: each question answered with one seed question/answer as example;
  4. answer validation: the judge rates 1-3; kept at 2 or 3.
With context (any seed has `context`): a new context is written from each seed's, then
grounded questions, grounded question validation (answerable from the context), grounded
answers and grounded answer validation, with the same thresholds.

Judges decode to a JSON schema where the engine can (hf with a grammar, vLLM); otherwise
their answer is parsed leniently, and an unparseable judgement rejects the item with
that reason. Every rejected item is kept, with the step and the reason.

Prompt texts are files in magpie/configs/prompts/skills/ (`string.Template`, `$name` fields);
a task's `prompt_templates_dir` holds files of the same names to override them.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template

from tqdm import tqdm

from magpie.engines.base import Engine, SamplingParams, item_seeds
from magpie.records import InputError, Journal
from magpie.resources import SKILLS_PROMPTS_DIR
from magpie.responses import chat_prompt
from magpie.tagging.llm import constrained, json_prompt, json_text, parse_answer
from magpie.tagging.schemas import LabelError

TEMPLATE_NAMES = (
    "generate_questions",
    "validate_question",
    "generate_answer",
    "validate_answer",
    "generate_context",
    "generate_grounded_questions",
    "validate_grounded_question",
    "generate_grounded_answer",
    "validate_grounded_answer",
)


def judge_schema(ratings: list[int]) -> dict:
    return {
        "type": "object",
        "properties": {
            "explanation": {"type": "string", "maxLength": 300},
            "rating": {"type": "integer", "enum": ratings},
        },
        "required": ["explanation", "rating"],
        "additionalProperties": False,
    }


QUESTION_RATINGS, ANSWER_RATINGS = [0, 1], [1, 2, 3]


def load_templates(override_dir: str | Path | None = None) -> dict[str, Template]:
    """The prompt templates, each from `override_dir` when it has the file."""
    out = {}
    for name in TEMPLATE_NAMES:
        path = SKILLS_PROMPTS_DIR / f"{name}.txt"
        if override_dir and (Path(override_dir) / f"{name}.txt").exists():
            path = Path(override_dir) / f"{name}.txt"
        out[name] = Template(path.read_text(encoding="utf-8"))
    return out


def fill(template: Template, **values) -> str:
    try:
        return template.substitute(**values)
    except (KeyError, ValueError) as e:
        raise InputError(f"prompt template: unknown or malformed field {e}") from None


_QUESTION_MARK = re.compile(
    r"^([ \t]*)(?:#+\s*)?(?:\*\*)?(question|task)\s*(\d+)\s*[:.)]?(?:\*\*)?\s*",
    re.IGNORECASE | re.MULTILINE,
)
_NUMBERED = re.compile(r"^([ \t]*)()(\d+)[.)]\s+", re.MULTILINE)


def _top_level(marks: list[re.Match]) -> list[re.Match]:
    """The markers that start a new question: the first one's label, indented no deeper,
    numbered on from the previous question. A list inside a question (one that restarts
    at 1, "Task 1:" items under "Question N", deeper indentation) stays in its text."""
    if not marks:
        return []
    first = marks[0]
    label, indent = first.group(2).lower(), len(first.group(1).expandtabs())
    top, expected, inner_next = [first], int(first.group(3)) + 1, None
    for m in marks[1:]:
        if m.group(2).lower() != label or len(m.group(1).expandtabs()) > indent:
            continue  # another label or deeper: inside the question
        number = int(m.group(3))
        if number == expected and number != inner_next:
            top.append(m)
            expected, inner_next = number + 1, None
        else:  # a list of the question's own, at the same level ("2." after its "1.")
            inner_next = number + 1
    return top


def _split_at(text: str, marks: list[re.Match]) -> list[str]:
    return [
        text[m.end() : marks[k + 1].start() if k + 1 < len(marks) else len(text)]
        for k, m in enumerate(marks)
    ]


def split_questions(text: str) -> list[str]:
    """Questions from a generation: "### Question N:" blocks, else numbered lines. A
    question that holds its own numbered or labelled list ("Plan a trip:\n1. flights\n2.
    hotel") is kept whole."""
    marks = _top_level(list(_QUESTION_MARK.finditer(text)))
    if not marks:
        numbered = list(_NUMBERED.finditer(text))
        preamble = text[: numbered[0].start()].strip() if numbered else ""
        # "Plan a trip:" then a list is one question; "Here are 3 questions:" is not.
        if preamble.endswith(":") and "question" not in preamble.lower():
            numbered = []
        marks = _top_level(numbered)
    parts = _split_at(text, marks) if marks else [text]
    questions = []
    for part in parts:
        q = part.strip().strip("*").strip()
        if len(q) >= 5:  # drop stray fragments
            questions.append(q)
    return questions


def read_rating(text: str, ratings: list[int], constrained: bool) -> tuple[int | None, str | None]:
    """The judge's rating, or None and why (an unparseable judgement rejects the item)."""
    try:
        answer = parse_answer(json_text(text, constrained), ["explanation", "rating"])
    except LabelError as e:
        return None, f"unparseable judgement: {e}"
    value = answer.get("rating")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value not in ratings:
        return None, f"unparseable judgement: rating {value!r} not in {ratings}"
    return value, None


@dataclass
class Item:
    question: str
    context: str | None = None
    answer: str | None = None
    seed_index: int = 0
    ratings: dict = field(default_factory=dict)


@dataclass
class StepCounts:
    """Per step: items in, kept, rejected by reason."""

    made: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)


class SkillsBuilder:
    """Grows question/answer items from a task's seed examples with one engine."""

    def __init__(
        self,
        engine: Engine,
        profile,
        task: dict,
        *,
        seed: int = 0,
        temperature: float = 0.7,
        top_p: float = 0.95,
        max_tokens: int = 512,
        judge_max_tokens: int = 160,
    ):
        self.engine, self.task = engine, task
        self.seeds = task["seed_examples"]
        self.templates = load_templates(task.get("prompt_templates_dir"))
        self.rng = random.Random(seed)
        self.seed = seed
        self.k = int(task.get("num_icl_examples_per_prompt", 3))
        self.n = int(task.get("num_questions_to_generate_per_prompt", 5))
        self.machine_batch_size = int(task.get("machine_batch_size", 0))
        self.machine_questions: list[str] = []  # kept in earlier rounds, for bootstrapping
        self.constrained = constrained(engine)
        self.gen = SamplingParams(
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop=list(profile.response_stop_tokens),  # answers: harmony's differ
            stop_token_ids=list(profile.response_stop_token_ids),
        )
        eos = getattr(engine.tokenizer, "eos_token_id", None)
        self.judge_max_tokens = judge_max_tokens
        self.judge_stop_ids = list(profile.stop_token_ids) or ([eos] if eos is not None else [])
        self.grounded = any(s.get("context") for s in self.seeds)
        self.counts = StepCounts()
        self.rejected: list[dict] = []
        self.calls = 0

    # --------------------------------------------------------------- engine calls
    def _generate(self, prompts: list[str], n_tokens: int | None = None) -> list[tuple[str, str]]:
        """(text, finish_reason) per prompt, in order."""
        if not prompts:
            return []
        self.calls += 1
        params = SamplingParams(**{**self.gen.__dict__, "seed": self.seed})
        if n_tokens:
            params.max_tokens = n_tokens
        chats = [
            chat_prompt(self.engine.tokenizer, [{"role": "user", "content": p}]) for p in prompts
        ]
        # Item k of call c draws from item_seeds(seed, "skills/c", k): calls are counted
        # in a fixed order and the count is restored on resume, so texts repeat exactly.
        out = self.engine.generate(chats, params, self._seeds(len(chats)))
        return [(c.text.strip(), c.finish_reason) for (c,) in out]

    def _seeds(self, count: int) -> list[int] | None:
        return item_seeds(self.seed, f"skills/{self.calls}", range(count))

    def _judge(self, prompts: list[str], ratings: list[int]) -> list[tuple[int | None, str | None]]:
        if not prompts:
            return []
        self.calls += 1
        params = SamplingParams(
            temperature=0.0,
            max_tokens=self.judge_max_tokens,
            stop_token_ids=self.judge_stop_ids,
            json_schema=judge_schema(ratings),
            seed=self.seed,
        )
        chats = [json_prompt(self.engine.tokenizer, p, self.constrained) for p in prompts]
        return [
            read_rating(c.text, ratings, self.constrained)
            for (c,) in self.engine.generate(chats, params, self._seeds(len(chats)))
        ]

    def _reject(self, step: str, item: Item, reason: str) -> None:
        self.counts.rejected[step] += 1
        self.rejected.append(
            {
                "step": step,
                "reason": reason,
                "question": item.question,
                "answer": item.answer,
                "context": item.context,
                "ratings": dict(item.ratings),
            }
        )

    def _filter(self, step: str, items: list[Item], judged, keep) -> list[Item]:
        """Keep items whose rating passes `keep`; reject the rest with the reason."""
        kept = []
        self.counts.made[step] += len(items)
        for item, (rating, reason) in zip(items, judged, strict=True):
            item.ratings[step] = rating
            if rating is None:
                self._reject(step, item, reason)
            elif not keep(rating):
                self._reject(step, item, f"rating {rating}")
            else:
                kept.append(item)
        self.counts.kept[step] += len(kept)
        return kept

    # --------------------------------------------------------------- steps
    def question_prompts(self) -> tuple[list[list[int]], list[str]]:
        """Seed chunks and their question-generation prompts. Each prompt shows a chunk of
        `num_icl_examples_per_prompt` seed questions and, as fms-dgt bootstraps
        (self-instruct style), up to `machine_batch_size` questions kept in earlier rounds."""
        order = list(range(len(self.seeds)))
        self.rng.shuffle(order)
        chunks = [order[i : i + self.k] for i in range(0, len(order), self.k)]
        prompts = []
        for chunk in chunks:
            shown = [self.seeds[i]["question"] for i in chunk]
            if self.machine_batch_size and self.machine_questions:
                m = min(self.machine_batch_size, len(self.machine_questions))
                shown += self.rng.sample(self.machine_questions, m)
            examples = "\n\n".join(f"### Question {j + 1}: {q}" for j, q in enumerate(shown))
            prompts.append(
                fill(
                    self.templates["generate_questions"],
                    task_description=self.task["task_description"],
                    examples=examples,
                    count=self.n,
                )
            )
        return chunks, prompts

    def _questions(self) -> list[Item]:
        chunks, prompts = self.question_prompts()
        items = []
        for chunk, (text, _) in zip(chunks, self._generate(prompts), strict=True):
            found = split_questions(text)[: self.n]
            if not found:
                self.rejected.append(
                    {
                        "step": "generate_questions",
                        "reason": "no question could be parsed",
                        "raw": text,
                    }
                )
                self.counts.rejected["generate_questions"] += 1
            items += [Item(q, seed_index=chunk[0]) for q in found]
        self.counts.made["generate_questions"] += len(items)
        self.counts.kept["generate_questions"] += len(items)
        return items

    def _contexts(self) -> list[tuple[int, str]]:
        with_context = [i for i, s in enumerate(self.seeds) if s.get("context")]
        prompts = [
            fill(
                self.templates["generate_context"],
                task_description=self.task["task_description"],
                example_context=self.seeds[i]["context"],
            )
            for i in with_context
        ]
        contexts = []
        for i, (text, _) in zip(with_context, self._generate(prompts), strict=True):
            self.counts.made["generate_context"] += 1
            m = re.search(r"\[Start of Context\](.*?)(\[End of Context\]|$)", text, re.S)
            context = (m.group(1) if m else text).strip()
            if len(context) < 20:
                self.counts.rejected["generate_context"] += 1  # made = kept + rejected
                self.rejected.append(
                    {"step": "generate_context", "reason": "no context text", "raw": text}
                )
                continue
            self.counts.kept["generate_context"] += 1
            contexts.append((i, context))
        return contexts

    def _grounded_questions(self, contexts: list[tuple[int, str]]) -> list[Item]:
        prompts = []
        for i, context in contexts:
            seed = self.seeds[i]
            prompts.append(
                fill(
                    self.templates["generate_grounded_questions"],
                    task_description=self.task["task_description"],
                    example_context=seed["context"],
                    example_question=seed["question"],
                    context=context,
                    count=self.n,
                )
            )
        items = []
        for (i, context), (text, _) in zip(contexts, self._generate(prompts), strict=True):
            found = split_questions(text)[: self.n]
            items += [Item(q, context=context, seed_index=i) for q in found]
        self.counts.made["generate_grounded_questions"] += len(items)
        self.counts.kept["generate_grounded_questions"] += len(items)
        return items

    def iterate(self) -> list[Item]:
        """One round of the pipeline; returns the items that passed answer validation."""
        desc = self.task["task_description"]
        if self.grounded:
            items = self._grounded_questions(self._contexts())
            step_q, step_a = "validate_grounded_question", "validate_grounded_answer"
        else:
            items = self._questions()
            step_q, step_a = "validate_question", "validate_answer"
        judged = self._judge(
            [
                fill(
                    self.templates[step_q],
                    task_description=desc,
                    question=it.question,
                    context=it.context or "",
                )
                for it in items
            ],
            QUESTION_RATINGS,
        )
        items = self._filter(step_q, items, judged, lambda r: r == 1)

        prompts = []
        for it in items:
            if self.grounded:
                prompts.append(
                    fill(
                        self.templates["generate_grounded_answer"],
                        task_description=desc,
                        context=it.context,
                        question=it.question,
                    )
                )
            else:
                ex = self.seeds[self.rng.randrange(len(self.seeds))]
                prompts.append(
                    fill(
                        self.templates["generate_answer"],
                        task_description=desc,
                        example_question=ex["question"],
                        example_answer=ex["answer"],
                        question=it.question,
                    )
                )
        step_gen = "generate_grounded_answer" if self.grounded else "generate_answer"
        answered = []
        for it, (text, finish) in zip(items, self._generate(prompts), strict=True):
            it.answer = text
            self.counts.made[step_gen] += 1
            if not text or finish in ("length", "repetitive"):
                why = "empty" if not text else "unfinished" if finish == "length" else finish
                self._reject(step_gen, it, f"{why} answer")
            else:
                self.counts.kept[step_gen] += 1
                answered.append(it)
        judged = self._judge(
            [
                fill(
                    self.templates[step_a],
                    task_description=desc,
                    question=it.question,
                    answer=it.answer,
                    context=it.context or "",
                )
                for it in answered
            ],
            ANSWER_RATINGS,
        )
        return self._filter(step_a, answered, judged, lambda r: r >= 2)

    def run(
        self, num_samples: int, max_iterations: int, journal: Journal | None = None
    ) -> list[Item]:
        """Iterate until `num_samples` items pass or `max_iterations` rounds are done.

        With a journal, every finished round is saved (its items and rejections, the counts,
        the random state), so a killed run resumes after its last finished round and ends
        with what an uninterrupted run would have made.
        """
        kept: list[Item] = []
        start = 0
        for round_no in sorted(journal.done) if journal is not None else []:
            kept += self._restore(journal.done[round_no])
            start = round_no + 1
        self.machine_questions = [it.question for it in kept]
        seen = {s["question"].strip().lower() for s in self.seeds}
        seen |= {it.question.strip().lower() for it in kept}
        bar = tqdm(
            total=num_samples,
            initial=min(len(kept), num_samples),
            desc=f"skills {self.task['task_name']}",
            unit="item",
        )
        for round_no in range(start, max_iterations):
            if len(kept) >= num_samples:
                break
            n_rejected = len(self.rejected)
            new = []
            for it in self.iterate():
                key = it.question.strip().lower()
                if key in seen:  # a copy of a seed or of an earlier item
                    self._reject("exact_duplicate", it, "same question as a seed or earlier item")
                    continue
                seen.add(key)
                new.append(it)
                bar.update(1)
            kept += new
            self.machine_questions += [it.question for it in new]
            if journal is not None:
                journal.append(round_no, self._state(new, self.rejected[n_rejected:]))
        bar.close()
        return kept[:num_samples]

    def _state(self, items: list[Item], rejected: list[dict]) -> dict:
        """What a finished round leaves behind: enough to go on as if never stopped."""
        return {
            "items": [asdict(it) for it in items],
            "rejected": rejected,
            "counts": {k: dict(getattr(self.counts, k)) for k in ("made", "kept", "rejected")},
            "rng": self.rng.getstate(),
            "calls": self.calls,
        }

    def _restore(self, state: dict) -> list[Item]:
        self.rejected += state["rejected"]
        self.counts = StepCounts(
            *(Counter(state["counts"][k]) for k in ("made", "kept", "rejected"))
        )
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.calls = state["calls"]
        return [Item(**d) for d in state["items"]]

    def steps(self) -> dict:
        """Per step: made, kept and rejected, for the summary."""
        c = self.counts
        return {
            step: {"made": c.made[step], "kept": c.kept[step], "rejected": c.rejected[step]}
            for step in sorted(set(c.made) | set(c.rejected))
        }


def item_record(task_name: str, i: int, it: Item) -> dict:
    """A generated item as a record the tagger, dedup and filter read."""
    instruction = f"{it.context}\n\n{it.question}" if it.context else it.question
    return {
        "id": f"{task_name}_{i}",
        "task_name": task_name,
        "question": it.question,
        "answer": it.answer,
        "context": it.context,
        "instruction": instruction,
        "response": it.answer,
        "judge_ratings": it.ratings,
    }
