"""Response generation: answer each instruction with the model's own chat template.

Magpie records are answered on their `instruction`. A record in another format the
conversation model reads (`conversations`, `messages`, `conversation`, `input`) whose
conversation ends on a user turn is answered too: the whole conversation is the prompt
and the answer becomes its next assistant turn (written back in every shape the record
carries). A conversation that already ends on an answer is left as it is (counted in the
summary); a record with no user turn at all is an input error naming it.

Records whose instruction is flagged (empty, unfinished) or missing text are not sent to
the model: they keep `response: null` with `response_flag: "skipped"`, so nothing is
silently treated as answered. A response that hits max_tokens is kept and flagged
"unfinished"; one the engine stopped looping "repetitive" (magpie.engines.repetition);
an empty one "empty".

With `num_samples` (gen_po_multi_res) each prompt is ONE request for n samples (the
original made n separate passes, re-prefilling every prompt), and a record gets
`responses` (n strings) with `response_finish_reasons` and `response_flags` aligned to
them; a skipped record gets `responses: null` and `response_flag: "skipped"`.

Thinking models (Qwen3, QwQ, DeepSeek-R1 and others) write "<think>...</think>" before
the answer, or their template opens the block in the prompt: the thoughts go to
`reasoning` (`reasonings` with num_samples) and `response` keeps only the answer; a
response still thinking at max_tokens is "unfinished". `enable_thinking=False` renders
the template without thinking (Qwen3's switch), for answers with no reasoning at all.
Harmony models (gpt-oss) answer in channels: `final` is the response, `analysis` the
reasoning; a reply with no final message (only a channel name, or cut mid-analysis) is
"unfinished", never a response. Answers stop at the profile's `response_stop_tokens`
(harmony: <|return|>, not the <|end|> that closes its analysis message).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from magpie.chat_template import chat_prompt
from magpie.completion import THINK_OPEN, read_completion
from magpie.conversation import (
    Conversation,
    ConversationError,
    Turn,
    message_list,
    read,
    write_back,
)
from magpie.engines.base import Engine, SamplingParams, item_seeds
from magpie.executor import Made, Step
from magpie.models import is_default_model
from magpie.profiles import Profile
from magpie.prompt_text import count_special_text, flag_special_text
from magpie.records import InputError, Journal, iter_records, where
from magpie.stage import Summary

log = logging.getLogger("magpie")


# Response sampling on the embedded SmolLM2-135M-Instruct when the user sets none: greedy
# answers of a 135M model loop (53% usable on 128 instructions), these give 94%
# (bench/sweep_responses.py, BENCHMARKS.md). scripts/magpie.sh passes the same values.
EMBEDDED_RESPONSE_DEFAULTS = {
    "temperature": 0.7,
    "top_p": 0.9,
    "frequency_penalty": 0.3,
    "max_tokens": 512,
}


def response_settings(model_path: str | None, given: dict, original: dict) -> dict:
    """The response settings of a stage: each of `given` (the flags; None = not passed) as
    passed, else the embedded model's measured default (`EMBEDDED_RESPONSE_DEFAULTS`) when
    `model_path` names the embedded model, else the stage's `original` default (the
    original's: greedy for gen_res)."""
    defaults = dict(original)
    if is_default_model(model_path):
        defaults.update((k, v) for k, v in EMBEDDED_RESPONSE_DEFAULTS.items() if k in defaults)
    return {k: defaults[k] if v is None else v for k, v in given.items()}


def used_penalties(frequency_penalty: float = 0.0, presence_penalty: float = 0.0) -> dict:
    """The OpenAI-style output penalties that are set, for records and journal fingerprints:
    recorded only when used, so outputs made before the flags existed stay valid."""
    return {
        k: v
        for k, v in (
            ("frequency_penalty", frequency_penalty),
            ("presence_penalty", presence_penalty),
        )
        if v
    }


def response_file_name(input_file: str | Path, suffix: str = "_res") -> Path:
    """<input stem><suffix>.json next to the input, as the original names it."""
    p = Path(input_file)
    return p.with_name(p.stem + suffix + ".json")


LOOKED_FOR = (
    "'instruction', or a conversation in 'conversations', 'messages', 'conversation' or 'input'"
)


def input_kind(
    record: dict, path: str | Path, i: int, multi: bool = False
) -> tuple[str, Conversation | None]:
    """What gen_res does with input record i: ("instruction", None) for a record with an
    `instruction` field, ("open", conversation) for a conversation ending on a user turn
    (answered as its next turn), ("answered", conversation) for one already ending on an
    answer (left as it is). InputError naming the file and record for an instruction that
    is not a string, a record with no user turn to answer (naming the fields looked for),
    or, for `multi` (gen_po_multi_res), a record with no `instruction`."""
    if "instruction" in record:
        value = record["instruction"]
        if value is not None and not isinstance(value, str):
            raise InputError(
                f"{where(path, i)}: field 'instruction' is not a string ({type(value).__name__})"
            )
        return "instruction", None
    if multi:
        raise InputError(f"{where(path, i)}: gen_po_multi_res answers 'instruction' fields")
    try:
        conv = read(record)
    except ConversationError as e:
        raise InputError(f"{where(path, i)}: {e}") from None
    chat = [t for t in conv.turns if t.role != "system"]
    if not chat or not any(t.role == "user" and t.text.strip() for t in chat):
        fields = ", ".join(sorted(record)[:8]) or "none"
        raise InputError(
            f"{where(path, i)}: no user turn to answer (looked for {LOOKED_FOR}; "
            f"the record has {fields})"
        )
    return ("open" if chat[-1].role == "user" else "answered"), conv


def check_input(input_file: str | Path, multi: bool = False) -> tuple[int, int]:
    """(records, conversations already ending on an answer) of a gen_res input, read in
    one streaming pass that fails on the first bad record (`input_kind`; malformed JSON,
    an empty file: as `read_records` says) before any model loads."""
    count = answered = 0
    for i, record in enumerate(iter_records(input_file)):
        answered += input_kind(record, input_file, i, multi)[0] == "answered"
        count += 1
    return count, answered


def counted_flags(records: Iterable[dict], flags: Counter) -> Iterator[dict]:
    """`records` passed on as they are, their response flags and special-token text
    added to a summary's `flags` on the way (finish counts while the output is written)."""
    for r in records:
        if r.get("response_flag"):
            flags[r["response_flag"]] += 1
        flags.update(f for f in r.get("response_flags") or () if f)
        count_special_text(flags, (r,))
        yield r


class ResponseJob(Step):
    """One response run: input validated (one streaming pass) and journal opened before
    any model loads. Items are (record index, record) pairs read from the input as the
    executor asks for them: the step holds no records, so memory stays flat however
    large the input, and a step shipped to Ray replicas carries none."""

    unit = "res"

    def __init__(
        self,
        profile: Profile,
        input_file: str | Path,
        output_path: str | Path | None = None,
        *,
        model_name: str,
        temperature: float = 0.0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        max_tokens: int = 4096,
        seed: int | None = None,
        num_samples: int | None = None,
        enable_thinking: bool | None = None,
    ):
        if enable_thinking not in (None, True, False):
            raise InputError(f"--enable_thinking must be True or False, not {enable_thinking!r}")
        if num_samples is not None and num_samples < 1:
            raise InputError(f"--num_samples must be at least 1, not {num_samples}")
        self.num_samples = num_samples
        self.seed = seed
        self.stage = "gen_res" if num_samples is None else "gen_po_multi_res"
        self.input_file = input_file
        self.total, self.answered = check_input(input_file, multi=num_samples is not None)
        self.params = SamplingParams(
            n=num_samples or 1,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            repetition_penalty=repetition_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            stop=list(profile.response_stop_tokens),
            stop_token_ids=list(profile.response_stop_token_ids),
            seed=seed,
        )
        self.configs = {
            "temperature": temperature,
            "top_p": top_p,
            "repetition_penalty": repetition_penalty,
            "max_tokens": max_tokens,
            "stop_tokens": list(profile.response_stop_tokens),
            "output_generator": model_name,
            "enable_thinking": enable_thinking,
        }
        self.template_kwargs = (
            {} if enable_thinking is None else {"enable_thinking": enable_thinking}
        )
        fingerprint = dict(self.template_kwargs)
        penalties = used_penalties(frequency_penalty, presence_penalty)
        self.configs.update(penalties)
        fingerprint.update(penalties)
        if num_samples is not None:
            self.configs.update(num_samples=num_samples, seed=seed)
            fingerprint["num_samples"] = num_samples
        suffix = "_res" if num_samples is None else f"_{num_samples}res"
        self.journal = Journal(
            output_path or response_file_name(input_file, suffix),
            {
                "stage": self.stage,
                "input": str(Path(input_file).resolve()),
                "records": self.total,
                "model": model_name,
                "temperature": temperature,
                "top_p": top_p,
                "repetition_penalty": repetition_penalty,
                "max_tokens": max_tokens,
                "seed": seed,
                **fingerprint,
            },
        )

    def _answer(self, completions: list, opened: bool) -> dict:
        """The record fields for one prompt's completions (one or n)."""
        thoughts, texts, flags = zip(
            *(read_completion(c, opened) for c in completions), strict=True
        )
        reasons = [c.finish_reason for c in completions]
        if self.num_samples is None:
            return {
                "response": texts[0],
                "reasoning": thoughts[0],
                "response_finish_reason": reasons[0],
                "response_flag": flags[0],
            }
        return {
            "responses": list(texts),
            "reasonings": list(thoughts),
            "response_finish_reasons": reasons,
            "response_flags": list(flags),
        }

    @staticmethod
    def _continued(record: dict, conv: Conversation, answer: dict) -> dict:
        """A conversation record's fields with the answer added as its next assistant
        turn (every shape the record carries, via `write_back`). A flagged answer
        (unfinished, repetitive, empty) adds no turn: it stays in `response` beside its
        flag, as an instruction record's does."""
        if answer["response_flag"] is not None:
            return answer
        text, reasoning = answer.pop("response"), answer.pop("reasoning")
        turns = [*conv.turns, Turn("assistant", text, reasoning)]
        answer.update(write_back(record, Conversation(turns, conv.source)))
        return answer

    def todo(self) -> Iterator[tuple[int, dict]]:
        return self.journal.pending(self.input_file)

    def progress(self) -> tuple[int, int]:
        return self.total, len(self.journal.done)

    def summary(self) -> Summary:
        return Summary(self.stage, self.total)

    def make(self, engine: Engine, items: list[tuple[int, dict]]) -> Iterator[Made]:
        """Records of these (index, record) items: conversations already answered left as
        they are, flagged instructions skipped, the rest answered."""
        multi = self.num_samples is not None
        skipped = (
            {"response": None, "response_flag": "skipped"}
            if self.num_samples is None
            else {"responses": None, "response_flag": "skipped"}
        )
        # "chat": the server's chat endpoint applies the template (openai engine, opt-in).
        chat = getattr(engine, "response_mode", "template") == "chat"
        if chat and self.template_kwargs:
            raise InputError(
                "--enable_thinking sets the chat template rendered here; with the server's "
                "chat endpoint (--response_mode chat) set it on the server"
            )
        configs = {
            **self.configs,
            "engine": engine.name,
            "response_mode": "chat" if chat else "template",
        }
        todo, records, convs, prompts = [], [], [], []
        for i, record in items:
            kind, conv = input_kind(record, self.input_file, i, multi)
            if kind == "answered":  # a conversation already ending on an answer: as it is
                yield i, record, 0
                continue
            if kind == "open":  # a conversation ending on a user turn
                messages = message_list(conv)
            else:
                text = record.get("instruction")
                if not text or record.get("instruction_flag"):
                    yield i, {**record, **skipped}, 0
                    continue
                messages = [{"role": "user", "content": text}]
            todo.append(i)
            records.append(record)
            convs.append(conv)
            prompts.append(
                messages
                if chat
                else chat_prompt(engine.tokenizer, messages, **self.template_kwargs)
            )
        stream = engine.chat_stream if chat else engine.stream
        seeds = item_seeds(self.seed, self.stage, todo, self.params.n)
        for k, completions in stream(prompts, self.params, seeds):
            opened = not chat and prompts[k].rstrip().endswith(THINK_OPEN)
            answer = self._answer(completions, opened)
            if convs[k] is not None:
                answer = self._continued(records[k], convs[k], answer)
            record = {
                **records[k],
                **answer,
                "gen_response_configs": {"prompt": None if chat else str(prompts[k]), **configs},
            }
            record = flag_special_text(record, engine.tokenizer)
            yield todo[k], record, sum(c.completion_tokens for c in completions)

    def finish(self, summary: Summary) -> Summary:
        """Write the output in record order, streamed from the journal, counting flags."""
        if self.answered:
            summary.flags["already answered (left as it was)"] += self.answered
        self.journal.finish(counted_flags(self.journal.in_order(self.total), summary.flags))
        summary.records_out = self.total
        return summary
