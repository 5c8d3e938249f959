"""LLM missions (difficulty, quality, sample_quality, classification, and safety when no
guard model is given): prompt the tagger, decode to the mission's JSON schema, check.

Every engine is asked for the schema (`SamplingParams.json_schema`). Where it is honoured
(hf with xgrammar, vLLM) every finished answer is a document of the schema. Where it is
not, the prompt is prefilled with "{" as the original did, the answer is parsed
leniently, and a failed record is asked once more (sampled at temperature
`RETRY_TEMPERATURE` when the first try was greedy, so that it can come out differently).
Labels are checked in both cases; a record that still fails keeps null labels and the
reason. The label of difficulty, quality, sample_quality and classification is then read
from the label tokens' probabilities and stored with its confidence
(magpie.tagging.scoring); the answer gives the free-text fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence

from magpie.chat_template import chat_prompt
from magpie.completion import THINK_CLOSE, THINK_OPEN, split_reasoning
from magpie.engines.base import Completion, Engine, SamplingParams, item_seeds
from magpie.tagging.inputs import Conversation
from magpie.tagging.prompts import mission_prompt
from magpie.tagging.schemas import FIELDS, SCHEMAS, LabelError, fields_from_answer
from magpie.tagging.scoring import LabelScorer, calibration_for, with_scored

RETRY_TEMPERATURE = 0.7
# End-of-turn tokens of common chat formats, besides the tokenizer's EOS.
END_OF_TURN = ("<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>", "</s>")
# Harmony (gpt-oss): <|end|> ends one message of the turn (its analysis), <|return|> and
# <|call|> end the turn; the generation prompt "<|start|>assistant" is followed by the
# channel header, and a JSON answer goes straight to the final channel.
HARMONY_CHANNEL, HARMONY_TURN_END = "<|channel|>", ("<|return|>", "<|call|>")
HARMONY_ASSISTANT, HARMONY_FINAL = "<|start|>assistant", "<|channel|>final<|message|>"


def turn_end_ids(tokenizer) -> list[int]:
    """Token ids that end the model's turn: its EOS and any end-of-turn token it has
    (for a harmony tokenizer <|return|> and <|call|>, not <|end|>, which ends a message)."""
    ids = {getattr(tokenizer, "eos_token_id", None)}
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    ends = END_OF_TURN
    if HARMONY_CHANNEL in vocab:
        ends = tuple(t for t in END_OF_TURN if t != "<|end|>") + HARMONY_TURN_END
        ids.discard(vocab.get("<|end|>"))
    ids |= {vocab[t] for t in ends if t in vocab}
    return sorted(i for i in ids if isinstance(i, int))


def constrained(engine: Engine) -> bool:
    """Whether the engine decodes to a JSON schema (vLLM always; hf with xgrammar)."""
    return bool(getattr(engine, "supports_json_schema", engine.name == "vllm"))


def constrained_for(engine: str) -> bool:
    """`constrained` of an engine known only by name, before it loads: the journal
    fingerprint is made where the run starts, the engine may load elsewhere (a Ray
    replica). vLLM always, hf where xgrammar is importable, a server never. Each loaded
    tagger's own value is checked against it (`magpie.tagging.job.TagJob.make`)."""
    if engine == "vllm":
        return True
    if engine == "hf":
        from magpie import grammar

        return grammar.available()
    return False


def tagger_settings(model_name: str, constrained: bool, **sampling) -> dict:
    """What changes an LLM tagger's answers: part of each mission's journal fingerprint.
    `sampling`: temperature, top_p, repetition_penalty, max_tokens, seed; the labels'
    priors (magpie.tagging.scoring) follow from the model."""
    return {
        "model": model_name,
        **sampling,
        "constrained": constrained,
        "labels": "probabilities",
        "label_priors": calibration_for(model_name),
    }


def _balanced(text: str, start: int) -> str | None:
    """The JSON object starting at text[start] == "{", up to its matching brace."""
    depth, in_string, escape = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escape:
                escape = False
            elif c == "\\":
                escape = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


_VALUE = r'("(?:[^"\\]|\\.)*"|\[[^\]]*\]|-?\d+(?:\.\d+)?)'


def parse_answer(text: str, keys: Sequence[str]) -> dict:
    """The JSON object in a model answer, read leniently.

    Tries, in order: the first balanced {...} (code fences and chatter around it are
    ignored); the text closed with a missing brace; key-by-key salvage of `"key": value`
    pairs. Raises LabelError("unparseable: ...") when nothing of the schema is found.
    """
    start = text.find("{")
    if start != -1:
        body = _balanced(text, start)
        candidates = [body] if body else [text[start:] + "}", text[start:] + '"}']
        for candidate in candidates:
            try:
                value = json.loads(candidate)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    salvaged = {}
    for key in keys:
        m = re.search(rf'"{re.escape(key)}"\s*:\s*{_VALUE}', text)
        if m:
            try:
                salvaged[key] = json.loads(m.group(1))
            except json.JSONDecodeError:
                continue
    if salvaged:
        return salvaged
    snippet = " ".join(text.split())[:80]
    raise LabelError(f"unparseable: no JSON object in the answer ({snippet!r})")


def json_prompt(tokenizer, content: str, constrained: bool) -> str:
    """The chat prompt for a JSON answer to `content`. Without a grammar it is prefilled
    with "{" (small models then answer in JSON far more often); with one, the grammar
    itself starts the object. A harmony prompt gets the final channel's header first (the
    answer, not an analysis message)."""
    prompt = chat_prompt(tokenizer, [{"role": "user", "content": content}])
    if prompt.endswith(HARMONY_ASSISTANT):
        prompt += HARMONY_FINAL
    return prompt if constrained else prompt + "{"


def json_text(text: str, constrained: bool) -> str:
    """The answer's JSON text: the final answer of a reasoning model (after its thinking
    block or in harmony's `final` channel, never a draft inside the thoughts), with the
    "{" prefill put back. A server that applied the schema anyway (one not known to)
    answers with the whole object: kept as it is. A reply still thinking has no answer
    (empty text)."""
    opened = THINK_CLOSE in text and not text.lstrip().startswith(THINK_OPEN)
    reasoning, answer, closed = split_reasoning(text, opened)
    if not closed:
        return ""
    if reasoning is not None or answer != text.strip():  # thoughts or channel headers cut
        return answer
    prefilled = not constrained and not answer.startswith("{")
    return "{" + answer if prefilled else answer


def _schema_keys(schema: dict) -> list[str]:
    keys: list[str] = []
    for part in schema.get("anyOf", [schema]):
        keys += [k for k in part["properties"] if k not in keys]
    return keys


class LLMTagger:
    """Runs the LLM missions on one engine."""

    def __init__(
        self,
        engine: Engine,
        model_name: str,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        max_tokens: int = 1024,
        seed: int | None = None,
    ):
        self.engine = engine
        self.model_name = model_name
        self.judge = model_name
        self.constrained = constrained(engine)
        self.temperature = temperature
        self.top_p = top_p
        self.repetition_penalty = repetition_penalty
        self.max_tokens = max_tokens
        self.seed = seed
        self.tokens = 0
        self.stop_token_ids = turn_end_ids(engine.tokenizer)
        self.scorer = LabelScorer(engine, model_name, calibration_for(model_name))

    def settings(self) -> dict:
        """What changes the answers: part of each mission's journal fingerprint."""
        return tagger_settings(
            self.model_name,
            self.constrained,
            temperature=self.temperature,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
            max_tokens=self.max_tokens,
            seed=self.seed,
        )

    def _params(self, mission: str, retry: bool) -> SamplingParams:
        temperature = self.temperature
        if retry and temperature < RETRY_TEMPERATURE:
            temperature = RETRY_TEMPERATURE
        return SamplingParams(
            temperature=temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            repetition_penalty=self.repetition_penalty,
            stop_token_ids=list(self.stop_token_ids),
            seed=self.seed,
            json_schema=SCHEMAS[mission],
        )

    def _prompt(self, mission: str, conv: Conversation) -> str:
        return json_prompt(self.engine.tokenizer, mission_prompt(mission, conv), self.constrained)

    def _read(self, mission: str, c: Completion) -> tuple[dict | None, str | None]:
        self.tokens += c.completion_tokens
        try:
            answer = parse_answer(
                json_text(c.text, self.constrained), _schema_keys(SCHEMAS[mission])
            )
            return fields_from_answer(mission, answer), None
        except LabelError as e:
            reason = str(e)
            if c.finish_reason == "length":
                reason = f"truncated: hit max_tokens ({self.max_tokens}); {reason}"
            return None, reason

    def tag(
        self, mission: str, items: Sequence[tuple[int, Conversation]]
    ) -> Iterator[tuple[int, dict, str | None]]:
        """Yield (key, fields, reason) for every item, in any order: the mission's fields
        (original names) and reason None, or only `<mission>_generator` and the reason.
        The answer gives the free text (intent, explanations); the label is read from the
        label tokens' probabilities (magpie.tagging.scoring), with its confidence."""
        judged = {FIELDS[mission][-1]: self.model_name}
        scored = self.scorer.score(mission, [conv for _, conv in items])
        prompts = [self._prompt(mission, conv) for _, conv in items]
        retry: list[int] = []
        keys = [key for key, _ in items]
        seeds = item_seeds(self.seed, f"unitag/{mission}", keys)
        for k, (c,) in self.engine.stream(prompts, self._params(mission, retry=False), seeds):
            fields, _ = self._read(mission, c)
            if fields is None:
                retry.append(k)
            else:
                yield items[k][0], {**with_scored(mission, fields, scored[k]), **judged}, None
        if not retry:
            return
        again = [prompts[k] for k in retry]
        seeds = item_seeds(self.seed, f"unitag/{mission}/retry", [keys[k] for k in retry])
        for j, (c,) in self.engine.stream(again, self._params(mission, retry=True), seeds):
            fields, reason = self._read(mission, c)
            if fields is not None:
                fields = with_scored(mission, fields, scored[retry[j]])
            yield items[retry[j]][0], {**(fields or {}), **judged}, reason
