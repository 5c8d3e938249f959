"""A chat model as the reward model: the expected value of its 1-5 rating (issue 16).

`gen_po_rewards.py --reward_model judge` needs no reward model to download: the judge
(by default the embedded SmolLM2-135M-Instruct, any chat model with `--judge_model_path`)
reads each instruction and response under a short rubric and is asked for one digit.
The assistant's turn is opened with "Rating:", so the next token is the rating; its
distribution is read on the five rating tokens, renormalised, and the score is the
expected rating sum(k * p_k), a number in [1, 5]. Nothing is sampled: the score is
deterministic, and it is continuous, so the five responses of an instruction rarely tie
(a sampled label would tie most of the time with five values).

Every engine gives the probabilities (`next_token_probs`): hf in one forward pass per
batch, vLLM by `logprob_token_ids`, a server by its completions' logprobs. `JudgeScorer`
has the interface `magpie.preference.RewardJob` uses for a reward model (`fit`, `scores`,
`model_path`), so the job runs it locally or on Ray replicas unchanged; records name it
`rewards_model` = "judge:<judge model>".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

from magpie.chat_template import chat_prompt
from magpie.models import canonical_name
from magpie.prompt_text import as_data, encode
from magpie.records import InputError
from magpie.tokens import token_paths

log = logging.getLogger("magpie")

JUDGE = "judge"
RATINGS = (1, 2, 3, 4, 5)
# The assistant's turn opens with this, so that its next token is the rating.
ANSWER_PREFIX = "Rating:"
RUBRIC = """Rate how well the answer below responds to the request, on a scale from 1 to 5:
1: wrong, off-topic or no real answer.
2: mostly unhelpful, or with serious mistakes.
3: partly helpful, with noticeable gaps or errors.
4: helpful and correct, with small flaws.
5: excellent: correct, complete and clearly written.
Reply with a single digit from 1 to 5.

<request>
{instruction}
</request>

<answer>
{response}
</answer>"""
CUT = " [...]"  # marks a text shortened to fit the judge's context
# Below this mean probability on the rating tokens the judge is not answering the rubric.
LOW_MASS = 0.5


def is_judge(reward_model: str | None) -> bool:
    """Whether a reward model name asks for the judge: "judge" or "judge:<model>"."""
    return bool(reward_model) and (reward_model == JUDGE or reward_model.startswith(JUDGE + ":"))


def judge_model_of(reward_model: str, judge_model_path: str | None = None) -> str:
    """The judge's model path: "judge:<model>" names it, else `judge_model_path` (""
    = the embedded model). Both, naming different models, is an error."""
    named = reward_model[len(JUDGE) + 1 :] if reward_model.startswith(JUDGE + ":") else None
    if named is not None and judge_model_path and named != judge_model_path:
        raise InputError(
            f"--reward_model {reward_model} and --judge_model_path {judge_model_path} name "
            "two judges; give one"
        )
    return named if named is not None else (judge_model_path or "")


def judge_name(model_path: str | None) -> str:
    """What records say made the scores: "judge:<canonical model name>"."""
    return f"{JUDGE}:{canonical_name(model_path)}"


def expected_rating(probs: Sequence[float]) -> float:
    """sum(k * p_k) over the ratings 1..5 after renormalising `probs` (their
    probabilities as the next token); NaN when they hold no probability at all."""
    total = math.fsum(probs)
    if not math.isfinite(total) or total <= 0:
        return math.nan
    return math.fsum(k * p for k, p in zip(RATINGS, probs, strict=True)) / total


def rating_tokens(tokenizer, head: str) -> tuple[str, list[int]]:
    """(the text that opens the answer, the token id of each rating) for prompts that
    end with `head` + ANSWER_PREFIX: the rating must be ONE token right after that text,
    as the tokenizer splits the whole prompt ("Rating: 4" is "Rating", ":", " ", "4" for
    some tokenizers and "Rating", ":", " 4" for others)."""
    if getattr(tokenizer, "encode", None) is None:
        raise InputError(
            "the judge needs its model's tokenizer on this machine (a folder, a .gguf file "
            "or a hub id in the local cache) to find the rating tokens"
        )
    words = [str(k) for k in RATINGS]
    try:
        opening, paths = token_paths(tokenizer, head + ANSWER_PREFIX, words, single_token=True)
    except ValueError:
        raise InputError(
            f"the judge's tokenizer does not write the ratings {RATINGS[0]}-{RATINGS[-1]} as "
            f"single tokens after {ANSWER_PREFIX!r}; use another judge model"
        ) from None
    return ANSWER_PREFIX + opening, [path[0] for path in paths]


class JudgeScorer:
    """A chat model on any engine, scoring (instruction, response) pairs as a reward
    model does (see the module docstring). `model_path` is what records name as the
    scorer ("judge:<model>"); `judge_model` the judge's own model path."""

    def __init__(self, engine, judge_model: str = "", *, max_length: int = 4096):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.judge_model = judge_model
        self.model_path = judge_name(judge_model)
        self.judge = self.model_path
        head = self._head("{instruction}", "{response}")
        self.opening, self.rating_ids = rating_tokens(self.tokenizer, head)
        context = getattr(engine, "max_model_len", None) or getattr(engine, "max_positions", None)
        self.max_length = min(x for x in (max_length, (context or 0) - 1) if x > 0)
        self.truncated = 0
        self.tokens = 0
        self.mass = 0.0  # probability on the rating tokens, summed over prompts
        self.scored = 0

    def settings(self) -> dict:
        return {"reward_model": self.model_path, "max_length": self.max_length}

    # -- prompts -----------------------------------------------------------------------

    def _head(self, instruction: str, response: str) -> str:
        return judge_head(self.tokenizer, instruction, response)

    def prompt(self, instruction: str, response: str) -> str:
        """The judge's prompt text: rubric, request and answer, the answer opened."""
        return self._head(instruction, response) + self.opening

    def _ids(self, text: str) -> list[int]:
        return encode(self.tokenizer, text)

    def fit(self, conv) -> tuple[list[int], bool]:
        """(prompt token ids, truncated) for a conversation's last user and assistant
        turns (an empty answer is judged too). Too long a prompt keeps the start of the
        answer and of the request (the answer gets at least half the room), marked CUT."""
        users, answers = conv.texts("user"), conv.texts("assistant")
        instruction = users[-1] if users else ""
        response = answers[-1] if answers else ""
        ids = self._ids(self.prompt(instruction, response))
        if len(ids) <= self.max_length:
            return ids, False
        self.truncated += 1
        q, a = self._ids(as_data(instruction)), self._ids(as_data(response))
        room = self.max_length - (len(ids) - len(q) - len(a)) - 2 * len(self._ids(CUT))
        for _ in range(8):  # re-tokenising at the cuts can add a token or two
            keep_a = min(len(a), max(room - len(q), room // 2))
            keep_q = max(0, min(len(q), room - keep_a))
            short_q = self.tokenizer.decode(q[:keep_q]) + (CUT if keep_q < len(q) else "")
            short_a = self.tokenizer.decode(a[:keep_a]) + (CUT if keep_a < len(a) else "")
            ids = self._ids(self.prompt(short_q, short_a))
            if len(ids) <= self.max_length:
                return ids, True
            room -= max(4, len(ids) - self.max_length)
        raise InputError(
            f"the judge's prompt does not fit its {self.max_length} tokens even with the "
            "request and answer cut: raise --max_length"
        )

    # -- scores ------------------------------------------------------------------------

    def rating_probs(self, prompts: Sequence) -> list[list[float]]:
        """The rating tokens' probabilities as the next token of each prompt."""
        return self.engine.next_token_probs(prompts, self.rating_ids)

    def scores(self, encoded: list[list[int]]) -> Iterator[tuple[int, float]]:
        """(index, expected rating) for prompt token ids (`fit`), NaN where the judge put
        no probability on any rating token."""
        if not encoded:
            return
        probs = self.rating_probs(encoded)
        masses = [math.fsum(p) for p in probs]
        finite = [m for m in masses if math.isfinite(m)]
        self.mass += math.fsum(finite)
        self.scored += len(finite)
        self.tokens += sum(len(ids) for ids in encoded)
        if finite:
            mean = math.fsum(finite) / len(finite)
            say = log.warning if mean < LOW_MASS else log.info
            say(
                "judge %s: %.2f of the next-token probability on the ratings (mean over %d "
                "prompts)%s",
                self.judge_model or "(embedded)",
                mean,
                len(finite),
                "; it is not answering the rubric, its scores mean little"
                if mean < LOW_MASS
                else "",
            )
        for k, p in enumerate(probs):
            yield k, expected_rating(p)


def judge_head(tokenizer, instruction: str, response: str) -> str:
    """The judge's chat template over the rubric, the assistant's turn opened."""
    text = RUBRIC.format(instruction=instruction, response=response)
    return chat_prompt(tokenizer, [{"role": "user", "content": text}])


def check_judge(judge_model_path: str, engine_options) -> None:
    """Refuse, before any weights load, a judge whose tokenizer cannot write the ratings
    as single tokens (or has no chat template)."""
    tokenizer = engine_options.tokenizer(judge_model_path)
    rating_tokens(tokenizer, judge_head(tokenizer, "{instruction}", "{response}"))


def load_judge(judge_model_path: str, engine_options, *, max_length: int = 4096, **options):
    """The judge on the engine `engine_options` asks for (a picklable loader for
    executors: functools.partial(load_judge, path, options, max_length=...))."""
    engine = engine_options.load(judge_model_path, **options)
    return JudgeScorer(engine, judge_model_path, max_length=max_length)
