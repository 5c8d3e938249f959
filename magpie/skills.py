"""Seed-driven skills generation (InstructLab "skills", as fms-dgt runs it) on our engines.

Without context, per iteration:
  1. questions: each prompt shows a chunk of seed questions as a few-shot conversation
     (the user asks for a question, the assistant's turn is a seed question, "another
     one, on a different subject", ...) and samples `num_questions_to_generate_per_prompt`
     new assistant turns, one question each. Where the engine decodes to a JSON schema
     the turns are {"question": ...} objects and the string is constrained to one line
     of 15-300 characters that ends as the seeds end (with "?" when every seed question
     does): a title or a list cannot be written;
  2. question validation: an LLM judge rates each 0/1; kept only at 1;
  3. answers: each question is the last user turn of a few-shot conversation whose
     earlier turns are seed questions and their answers;
  4. answer validation: the judge rates 1-3; kept at 2 or 3.
With context (any seed has `context`): a new context is written from each seed's (few
shot, as the questions), then grounded questions, grounded question validation
(answerable from the context), grounded answers and grounded answer validation, with the
same thresholds.

Why this layout: the embedded SmolLM2-135M-Instruct, asked in one prompt for "N new tasks
as ### Question N: blocks", wrote titles ("The Science of Sleep: How Sleep Affects ...")
or copied the examples, and answered by repeating the title (bench/sweep_skills.py and
BENCHMARKS.md, "Skills generation on the embedded default").

Judges decode to a JSON schema where the engine can (hf with a grammar, vLLM); otherwise
their answer is parsed leniently, and an unparseable judgement rejects the item with
that reason. A judge measured not to separate good items from bad ones (CANNOT_JUDGE:
the embedded model rates even the seed answers 1) is not asked: the step keeps its
items, records null ratings and says why, and the answers' quality is left to the
task's tagging and filter (sample quality, which the embedded model ranks). Every
rejected item is kept, with the step and the reason.

Prompt texts are files in magpie/configs/prompts/skills/ (`string.Template`, `$name` fields);
a task's `prompt_templates_dir` holds files of the same names to override them.

Where it runs: each engine call of a round is a `SkillsCall` (magpie.executor.Step) run by
an executor, here (`LocalExecutor`) or on Ray replicas of the model (`magpie.ray_executor.
RayExecutor`), like every other model stage. The builder is the driver: it renders a
call's prompts (round N's depend on what rounds before kept, and a step's on the step
before), hands the call to the executor and reads its journal entries back. Sample j of
prompt k of the builder's c-th call draws from item_seeds(seed, "skills/c", [k], n) (calls
are counted in a fixed order, restored on resume), so a record's text depends only on
(seed, call, prompt, sample): local and Ray runs give the same records. Journal entries:
"<round>/<step>/<k>" for each prompt's samples (a killed run resumes inside its round,
nothing made twice) and the round number for a finished round's state.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template

from magpie.chat_template import chat_prompt
from magpie.engines.base import Engine, SamplingParams, item_seeds
from magpie.executor import LocalExecutor, Made, Step
from magpie.records import InputError, Journal, MemoryJournal
from magpie.resources import SKILLS_PROMPTS_DIR
from magpie.stage import Summary
from magpie.tagging.llm import LLMTagger, constrained, json_prompt, json_text, parse_answer
from magpie.tagging.schemas import LabelError

log = logging.getLogger("magpie")

TEMPLATE_NAMES = (
    "generate_questions",
    "ask_another_question",
    "validate_question",
    "generate_answer",
    "validate_answer",
    "generate_context",
    "ask_another_context",
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

_EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"
_ANSWER_JUDGE = (
    "cannot_judge: the embedded SmolLM2-135M-Instruct judge rates every answer 1, the seed "
    "answers included (BENCHMARKS.md, skills); answers are left to the task's sample-quality "
    "tag and filter. Give a larger --model_path for this step"
)
# (model, step): why the model's judgement is not asked for at that step.
CANNOT_JUDGE = {
    (_EMBEDDED, "validate_answer"): _ANSWER_JUDGE,
    (_EMBEDDED, "validate_grounded_answer"): _ANSWER_JUDGE,
}


def _constrained(engine: Engine) -> bool:
    return constrained(engine)


def question_schema(seeds: list[str]) -> dict:
    """One question as a JSON object: a single line of 15-300 characters, ending with "?"
    when every seed question does (else with any sentence end)."""
    one_line = all("\n" not in q.strip() for q in seeds)
    body = "[^\\n]" if one_line else "[\\s\\S]"
    end = "\\?" if all(q.strip().endswith("?") for q in seeds) else "[.?!:]"
    return {
        "type": "object",
        "properties": {"question": {"type": "string", "pattern": f"^[^\\s]{body}{{13,298}}{end}$"}},
        "required": ["question"],
        "additionalProperties": False,
    }


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


class SkillsCall(Step):
    """One engine call of a skills round, as a step an executor runs: item k is prompt k
    (rendered by the builder); its journal entry, under "<round>/<step>/<k>", is the `n`
    samples [text, finish_reason]. Sample j draws from item_seeds(seed, seed_stage, [k],
    n) + j, so which replica or call made it does not matter.

    The model is an engine, or an `LLMTagger` holding one (run_task loads one tagger per
    task: it makes the items and tags them). `constrained`: whether the engine the prompts
    were written for decodes to a JSON schema; a model that does otherwise is refused."""

    unit = "prompt"

    def __init__(
        self,
        name: str,
        round_no: int,
        seed_stage: str,
        prompts: list,
        params: SamplingParams,
        seed: int | None,
        journal,
        constrained: bool | None = None,
    ):
        self.name, self.round_no, self.seed_stage = name, round_no, seed_stage
        self.stage = f"skills r{round_no} {name}"
        self.prompts, self.params, self.seed = prompts, params, seed
        self.journal, self.constrained = journal, constrained

    def key(self, k: int) -> str:
        return f"{self.round_no}/{self.name}/{k}"

    def todo(self) -> list[int]:
        done = self.journal.done
        return [k for k in range(len(self.prompts)) if self.key(k) not in done]

    def progress(self) -> tuple[int, int]:
        return len(self.prompts), len(self.prompts) - len(self.todo())

    def summary(self) -> Summary:
        return Summary(self.stage, len(self.prompts))

    def make(self, model, items: list[int]) -> Iterator[Made]:
        engine = model.engine if isinstance(model, LLMTagger) else model
        if self.constrained is not None and constrained(engine) != self.constrained:
            raise InputError(
                f"{self.stage}: the engine loaded here {'does' if constrained(engine) else 'does not'} "
                "decode to a JSON schema, unlike the one the run's prompts were written for "
                "(a worker with other packages than the driver, e.g. xgrammar?)"
            )
        prompts = [self.prompts[k] for k in items]
        seeds = item_seeds(self.seed, self.seed_stage, items, self.params.n)
        for i, completions in engine.stream(prompts, self.params, seeds):
            samples = [[c.text, c.finish_reason] for c in completions]
            yield self.key(items[i]), samples, sum(c.completion_tokens for c in completions)

    def finish(self, summary: Summary) -> Summary:
        summary.records_out = len(self.prompts)  # read back from the journal by the builder
        return summary

    def results(self) -> list[list[tuple[str, str]]]:
        """Per prompt, in order, its samples (text, finish_reason)."""
        return [
            [(t, f) for t, f in self.journal.done[self.key(k)]] for k in range(len(self.prompts))
        ]


class SkillsBuilder:
    """Grows question/answer items from a task's seed examples with one model.

    `engine`: the model, run here. Or None, and the model is loaded by `load` on
    `executor` (a `LocalExecutor`, a `RayExecutor`: the same records), with `tokenizer`
    (the model's, to render prompts) and `constrained` (whether that engine decodes to a
    JSON schema: magpie.tagging.llm.constrained_for). The same `load` object serves every
    call, so the model loads once (once per replica).
    """

    def __init__(
        self,
        engine: Engine | None,
        profile,
        task: dict,
        *,
        seed: int = 0,
        temperature: float = 0.7,
        top_p: float = 0.95,
        max_tokens: int = 512,
        judge_max_tokens: int = 160,
        frequency_penalty: float = 0.3,
        model_name: str = "",
        tokenizer=None,
        constrained: bool | None = None,
        executor=None,
        load: Callable | None = None,
    ):
        if engine is None and (tokenizer is None or constrained is None or load is None):
            raise ValueError("without an engine, give tokenizer, constrained and load")
        self.engine, self.task = engine, task
        self.tokenizer = tokenizer if tokenizer is not None else engine.tokenizer
        self.executor = executor if executor is not None else LocalExecutor()
        self.load = load if load is not None else self._given_engine
        self.journal = MemoryJournal()  # run() sets the run's own
        self.round = 0
        self.seeds = task["seed_examples"]
        self.templates = load_templates(task.get("prompt_templates_dir"))
        self.rng = random.Random(seed)
        self.seed = seed
        self.k = int(task.get("num_icl_examples_per_prompt", 3))
        self.n = int(task.get("num_questions_to_generate_per_prompt", 5))
        self.machine_batch_size = int(task.get("machine_batch_size", 0))
        self.machine_questions: list[str] = []  # kept in earlier rounds, for bootstrapping
        # What the engine does (checked where it loads) and what the prompts use (the same
        # unless a caller turns the grammar off: bench/sweep_skills.py).
        self.engine_constrained = _constrained(engine) if constrained is None else constrained
        self.constrained = self.engine_constrained
        # Questions and contexts: sampled, no penalty (a question is short). Answers: the
        # response stages' setting for small models, frequency penalty 0.3 (gen_res).
        self.gen = SamplingParams(
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop=list(profile.response_stop_tokens),  # answers: harmony's differ
            stop_token_ids=list(profile.response_stop_token_ids),
        )
        self.frequency_penalty = frequency_penalty
        self.question_max_tokens = 96
        self.cannot_judge = {
            step: why for (model, step), why in CANNOT_JUDGE.items() if model == model_name
        }
        eos = getattr(self.tokenizer, "eos_token_id", None)
        self.judge_max_tokens = judge_max_tokens
        self.judge_stop_ids = list(profile.stop_token_ids) or ([eos] if eos is not None else [])
        self.grounded = any(s.get("context") for s in self.seeds)
        self.counts = StepCounts()
        self.rejected: list[dict] = []
        self.calls = 0

    def _given_engine(self) -> Engine:
        return self.engine

    # --------------------------------------------------------------- engine calls
    def _call(
        self, step: str, prompts: list, params: SamplingParams
    ) -> list[list[tuple[str, str]]]:
        """Per prompt, in order, its `params.n` samples (text, finish_reason): one
        `SkillsCall` run by the executor (only the prompts its journal lacks are made)."""
        if not prompts:
            return []
        self.calls += 1
        # Prompt k of call c draws from item_seeds(seed, "skills/c", k): calls are counted
        # in a fixed order and the count is restored on resume, so texts repeat exactly.
        job = SkillsCall(
            step,
            self.round,
            f"skills/{self.calls}",
            prompts,
            params,
            self.seed,
            self.journal,
            self.engine_constrained,
        )
        self.executor.run(job, self.load)
        return job.results()

    def _generate(
        self,
        step: str,
        chats: list[list[dict]],
        n_tokens: int | None = None,
        n: int = 1,
        **params,
    ) -> list[list[tuple[str, str]]]:
        """Per conversation (its last turn the user's), `n` samples of the assistant's
        next turn: (text, finish_reason) each, in order."""
        if not chats:
            return []
        sampling = SamplingParams(**{**self.gen.__dict__, "seed": self.seed, "n": n, **params})
        if n_tokens:
            sampling.max_tokens = n_tokens
        prompts = [chat_prompt(self.tokenizer, messages) for messages in chats]
        out = self._call(step, prompts, sampling)
        return [[(text.strip(), finish) for text, finish in samples] for samples in out]

    def _judge(
        self, step: str, prompts: list[str], ratings: list[int]
    ) -> list[tuple[int | None, str | None]]:
        if not prompts:
            return []
        params = SamplingParams(
            temperature=0.0,
            max_tokens=self.judge_max_tokens,
            stop_token_ids=self.judge_stop_ids,
            json_schema=judge_schema(ratings),
            seed=self.seed,
        )
        chats = [json_prompt(self.tokenizer, p, self.constrained) for p in prompts]
        return [
            read_rating(text, ratings, self.constrained)
            for [(text, _)] in self._call(step, chats, params)
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
    def _question_turn(self, question: str) -> str:
        """A question as the assistant writes it: a JSON object under a grammar, else text."""
        if self.constrained:
            return json.dumps({"question": question}, ensure_ascii=False)
        return question

    def _read_question(self, text: str, finish: str) -> tuple[str | None, str | None]:
        """(the question, None) or (None, why not) from one sampled assistant turn."""
        if finish == "length":
            return None, "unfinished question"
        if self.constrained:
            try:
                question = json.loads(text).get("question")
            except (ValueError, AttributeError):
                return None, "no question could be parsed"
        else:  # free text: the first question in it
            found = split_questions(text)
            question = found[0] if found else None
        if not isinstance(question, str) or len(question.strip()) < 5:
            return None, "no question could be parsed"
        return question.strip(), None

    def _sample_questions(self, step: str, chats: list[list[dict]], make) -> list[Item]:
        """`num_questions_to_generate_per_prompt` questions sampled per conversation;
        `make(k, question)` makes conversation k's item."""
        params = {"n_tokens": self.question_max_tokens, "n": self.n}
        if self.constrained:
            params["json_schema"] = question_schema([s["question"] for s in self.seeds])
        items = []
        for k, samples in enumerate(self._generate(step, chats, **params)):
            for text, finish in samples:
                self.counts.made[step] += 1
                question, why = self._read_question(text, finish)
                if question is None:
                    self.counts.rejected[step] += 1
                    self.rejected.append({"step": step, "reason": why, "raw": text})
                    continue
                self.counts.kept[step] += 1
                items.append(make(k, question))
        return items

    def question_prompts(self) -> tuple[list[list[int]], list[list[dict]]]:
        """Seed chunks and their question-generation conversations. Each shows a chunk of
        `num_icl_examples_per_prompt` seed questions as earlier assistant turns and, as
        fms-dgt bootstraps (self-instruct style), up to `machine_batch_size` questions
        kept in earlier rounds; its last turn asks for one more."""
        order = list(range(len(self.seeds)))
        self.rng.shuffle(order)
        chunks = [order[i : i + self.k] for i in range(0, len(order), self.k)]
        desc = self.task["task_description"]
        first = fill(self.templates["generate_questions"], task_description=desc)
        another = fill(self.templates["ask_another_question"], task_description=desc)
        chats = []
        for chunk in chunks:
            shown = [self.seeds[i]["question"] for i in chunk]
            if self.machine_batch_size and self.machine_questions:
                m = min(self.machine_batch_size, len(self.machine_questions))
                shown += self.rng.sample(self.machine_questions, m)
            messages = []
            for j, q in enumerate(shown):
                messages.append({"role": "user", "content": first if j == 0 else another})
                messages.append({"role": "assistant", "content": self._question_turn(q)})
            messages.append({"role": "user", "content": another})
            chats.append(messages)
        return chunks, chats

    def _questions(self) -> list[Item]:
        chunks, chats = self.question_prompts()
        return self._sample_questions(
            "generate_questions", chats, lambda k, q: Item(q, seed_index=chunks[k][0])
        )

    def _contexts(self) -> list[tuple[int, str]]:
        """One new context per seed with one: a few-shot conversation whose earlier
        assistant turns are other seeds' contexts and, last, this seed's."""
        desc = self.task["task_description"]
        first = fill(self.templates["generate_context"], task_description=desc)
        another = fill(self.templates["ask_another_context"], task_description=desc)
        with_context = [i for i, s in enumerate(self.seeds) if s.get("context")]
        chats = []
        for i in with_context:
            others = [j for j in with_context if j != i][: max(0, self.k - 1)]
            messages = []
            for n, j in enumerate([*others, i]):
                messages.append({"role": "user", "content": first if n == 0 else another})
                messages.append({"role": "assistant", "content": self.seeds[j]["context"]})
            messages.append({"role": "user", "content": another})
            chats.append(messages)
        contexts = []
        outs = self._generate("generate_context", chats)
        for i, [(text, finish)] in zip(with_context, outs, strict=True):
            self.counts.made["generate_context"] += 1
            m = re.search(r"\[Start of Context\](.*?)(\[End of Context\]|$)", text, re.S)
            context = (m.group(1) if m else text).strip()
            why = (
                "no context text"
                if len(context) < 20
                else "unfinished context"
                if finish in ("length", "repetitive")
                else None
            )
            if why:
                self.counts.rejected["generate_context"] += 1  # made = kept + rejected
                self.rejected.append({"step": "generate_context", "reason": why, "raw": text})
                continue
            self.counts.kept["generate_context"] += 1
            contexts.append((i, context))
        return contexts

    def _grounded_ask(self, context: str) -> str:
        return fill(
            self.templates["generate_grounded_questions"],
            task_description=self.task["task_description"],
            context=context,
        )

    def _grounded_questions(self, contexts: list[tuple[int, str]]) -> list[Item]:
        chats = []
        for i, context in contexts:
            seed = self.seeds[i]
            chats.append(
                [
                    {"role": "user", "content": self._grounded_ask(seed["context"])},
                    {"role": "assistant", "content": self._question_turn(seed["question"])},
                    {"role": "user", "content": self._grounded_ask(context)},
                ]
            )
        return self._sample_questions(
            "generate_grounded_questions",
            chats,
            lambda k, q: Item(q, context=contexts[k][1], seed_index=contexts[k][0]),
        )

    def _answer_chat(self, item: Item) -> list[dict]:
        """The question as the last user turn after seed questions answered (up to
        `num_icl_examples_per_prompt`, drawn at random; for a grounded item the seeds
        with a context, each asked with its document)."""
        desc = self.task["task_description"]
        pool = [i for i, s in enumerate(self.seeds) if s.get("context")] if self.grounded else []
        pool = pool or list(range(len(self.seeds)))
        shown = self.rng.sample(pool, min(self.k, len(pool)))

        def ask(question: str, context: str | None) -> str:
            if self.grounded:
                return fill(
                    self.templates["generate_grounded_answer"],
                    task_description=desc,
                    context=context or "",
                    question=question,
                )
            return fill(self.templates["generate_answer"], task_description=desc, question=question)

        messages = []
        for i in shown:
            seed = self.seeds[i]
            messages.append({"role": "user", "content": ask(seed["question"], seed.get("context"))})
            messages.append({"role": "assistant", "content": seed["answer"]})
        messages.append({"role": "user", "content": ask(item.question, item.context)})
        return messages

    def _not_judged(self, step: str, items: list[Item]) -> list[Item]:
        """A step whose judge cannot judge (CANNOT_JUDGE): items kept, rating null."""
        self.counts.made[step] += len(items)
        self.counts.kept[step] += len(items)
        for item in items:
            item.ratings[step] = None
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
            step_q,
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

        step_gen = "generate_grounded_answer" if self.grounded else "generate_answer"
        chats = [self._answer_chat(it) for it in items]
        answered = []
        outs = self._generate(step_gen, chats, frequency_penalty=self.frequency_penalty)
        for it, [(text, finish)] in zip(items, outs, strict=True):
            it.answer = text
            self.counts.made[step_gen] += 1
            if not text or finish in ("length", "repetitive"):
                why = "empty" if not text else "unfinished" if finish == "length" else finish
                self._reject(step_gen, it, f"{why} answer")
            else:
                self.counts.kept[step_gen] += 1
                answered.append(it)
        if step_a in self.cannot_judge:
            return self._not_judged(step_a, answered)
        judged = self._judge(
            step_a,
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

        With a journal, every prompt's samples are saved as they are made and every
        finished round's state (its items and rejections, the counts, the random state,
        the call count), so a killed run resumes after its last finished round, makes only
        what its unfinished round lacks, and ends with what an uninterrupted run would have
        made.
        """
        kept: list[Item] = []
        start = 0
        self.journal = journal if journal is not None else MemoryJournal()
        for round_no in sorted(k for k in self.journal.done if isinstance(k, int)):
            kept += self._restore(self.journal.done[round_no])
            start = round_no + 1
        self.machine_questions = [it.question for it in kept]
        seen = {s["question"].strip().lower() for s in self.seeds}
        seen |= {it.question.strip().lower() for it in kept}
        name = self.task.get("task_name", "")
        for round_no in range(start, max_iterations):
            if len(kept) >= num_samples:
                break
            self.round = round_no
            n_rejected = len(self.rejected)
            new = []
            for it in self.iterate():
                key = it.question.strip().lower()
                if key in seen:  # a copy of a seed or of an earlier item
                    self._reject("exact_duplicate", it, "same question as a seed or earlier item")
                    continue
                seen.add(key)
                new.append(it)
            kept += new
            self.machine_questions += [it.question for it in new]
            self.journal.append(round_no, self._state(new, self.rejected[n_rejected:]))
            log.info(
                "[skills %s] round %d: %d items kept (%d of %d)",
                name,
                round_no,
                len(new),
                min(len(kept), num_samples),
                num_samples,
            )
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
        out = {
            step: {"made": c.made[step], "kept": c.kept[step], "rejected": c.rejected[step]}
            for step in sorted(set(c.made) | set(c.rejected))
        }
        for step, why in self.cannot_judge.items():
            if step in out:
                out[step]["not_judged"] = why
        return out


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
