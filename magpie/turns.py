"""Growing conversations: the turn runner of gen_mt and gen_conv (magpie.multiturn), the
paper's multi-turn system prompt and gen_conv's --system_prompt.

A conversation is grown as the record model's `magpie.conversation.Conversation`, turn
by turn; prompts are the model's own chat template (magpie.chat_template: the follow-up
user turn is the conversation so far followed by the header of a new user turn).

Turns are generated step by step across the conversations of a chunk (all first user
turns, then all first replies, ...; with the local executor one chunk holds them all), so
the engine batches them; each finished turn goes to the journal, so a killed run resumes
at the turn it was on (`TurnStep`). A turn that comes back empty or unfinished ends that
conversation (its `stop_reason`): the record keeps the turns it has and
`conversation_stop_reason` says why; other records are untouched.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from magpie.completion import THINK_OPEN, read_completion
from magpie.conversation import Conversation, Turn
from magpie.engines.base import Engine, SamplingParams, item_seeds
from magpie.executor import Made, Step
from magpie.records import InputError

# The paper's multi-turn system prompt, with the original's typos ("Al assistant",
# "thorough,relevant") fixed on purpose.
MULTI_TURN_SYSTEM_PROMPT = (
    "You are a helpful AI assistant. The user will engage in a multi-round conversation "
    "with you, asking initial questions and following up with additional related "
    "questions. Your goal is to provide thorough, relevant and insightful responses to "
    "help the user with their queries."
)


# ---------------------------------------------------------------- system prompts
@dataclass
class SystemPrompts:
    """A parsed --system_prompt: prompts with weights; keys when it came from a mapping."""

    prompts: list[str]
    weights: list[float]
    keys: list[str] | None = None

    def choose(self, rng: random.Random) -> tuple[str | None, str]:
        i = rng.choices(range(len(self.prompts)), weights=self.weights)[0]
        return (self.keys[i] if self.keys else None), self.prompts[i]


def parse_system_prompts(spec) -> SystemPrompts | None:
    """str | list[str] | {name: str} | {name: [str, weight]}, or a .json/.yaml file of one.

    Weights are normalised (so 0.6/0.1/0.1/0.1/0.1 is fine whatever its float sum);
    negative or all-zero weights are refused.
    """
    if spec is None or spec is False or spec == "":
        return None
    if isinstance(spec, str) and spec.endswith((".json", ".yaml", ".yml")) and Path(spec).exists():
        with open(spec, encoding="utf-8") as f:
            loaded = json.load(f) if spec.endswith(".json") else yaml.safe_load(f)
        return parse_system_prompts(loaded)
    if isinstance(spec, str):
        return SystemPrompts([spec], [1.0])
    if isinstance(spec, list | tuple):
        if not spec or not all(isinstance(p, str) and p for p in spec):
            raise InputError("--system_prompt list must hold non-empty strings")
        return SystemPrompts(list(spec), [1.0] * len(spec))
    if isinstance(spec, dict):
        if not spec:
            raise InputError("--system_prompt mapping is empty")
        keys, prompts, weights = [], [], []
        for key, value in spec.items():
            if isinstance(value, str):
                prompt, weight = value, 1.0
            elif isinstance(value, list | tuple) and len(value) == 2:
                prompt, weight = value
            else:
                raise InputError(
                    f"--system_prompt '{key}': expected a prompt or [prompt, weight], got {value!r}"
                )
            if not isinstance(prompt, str) or not prompt:
                raise InputError(f"--system_prompt '{key}': the prompt must be a non-empty string")
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise InputError(f"--system_prompt '{key}': weight {weight!r} is not a number")
            if weight < 0:
                raise InputError(f"--system_prompt '{key}': weight {weight} is negative")
            keys.append(str(key))
            prompts.append(prompt)
            weights.append(float(weight))
        total = sum(weights)
        if total <= 0:
            raise InputError("--system_prompt weights are all zero")
        return SystemPrompts(prompts, [w / total for w in weights], keys)
    raise InputError(
        f"--system_prompt: expected a string, list or mapping, got {type(spec).__name__}"
    )


# ---------------------------------------------------------------- turn runner
def growing(conv: Conversation, max_turns: int | None = None) -> bool:
    """Whether `conv` may get another turn: it has not stopped and has fewer than
    `max_turns` turns after its system turn (None: no limit)."""
    return conv.stop_reason is None and (max_turns is None or len(conv.chat) < max_turns)


def run_turns(
    engine: Engine,
    convs: dict[int, Conversation],
    journaled: dict[int, dict[int, dict]],
    roles: Sequence[str],
    prompt_for: Callable[[str, Conversation], str],
    params_for: Callable[[str], SamplingParams],
    stage: str,
    max_turns: int | None = None,
) -> Iterator[Made]:
    """Grow the conversations {index: conversation} by `roles` (e.g. user, assistant,
    user ...), step by step, all of them in one engine call per step; yield each new
    turn's entry under "i/step". A turn in `journaled` ({index: {step: entry}}) is
    applied, not made. A conversation stops growing at `max_turns` turns (see `growing`).

    Conversation i's turn at `step` draws from the seed of item i of "<stage>/<step>"
    (`item_seeds`, with the run seed from `params_for(role).seed`): the same text whichever
    conversations share its call, and after a resume."""
    for step, role in enumerate(roles):
        todo = []
        for i, conv in convs.items():
            if not growing(conv, max_turns):
                continue
            entry = journaled.get(i, {}).get(step)
            if entry is not None:
                _apply(conv, entry)
            else:
                todo.append(i)
        if not todo:
            continue
        prompts = [prompt_for(role, convs[i]) for i in todo]
        params = params_for(role)
        seeds = item_seeds(params.seed, f"{stage}/{step}", todo)
        for k, (c,) in engine.stream(prompts, params, seeds):
            i = todo[k]
            opened = prompts[k].rstrip().endswith(THINK_OPEN)
            reasoning, text, failure = read_completion(c, opened, role == "assistant")
            entry = {
                "role": role,
                "content": text,
                "failure": failure,
                "turn": len(convs[i].chat) // 2 + 1,
                "engine": engine.name,  # for the records' configs (finish has no engine)
            }
            if reasoning is not None:
                entry["reasoning"] = reasoning
            _apply(convs[i], entry)
            yield f"{i}/{step}", entry, c.completion_tokens


def _apply(conv: Conversation, entry: dict) -> None:
    """A journal entry applied: a new turn (with a thinking model's thoughts kept aside
    as its reasoning), or the conversation's stop reason when the turn failed."""
    if entry["failure"]:
        name = "instruction" if entry["role"] == "user" else "response"
        conv.stop_reason = f"{name} {entry['turn']} {entry['failure']}"
    else:
        conv.turns.append(Turn(entry["role"], entry["content"], entry.get("reasoning")))


class TurnStep(Step):
    """A stage that grows conversations by `roles`, one journal entry per turn ("i/step").

    Items are (conversation index, source, {step: its journaled turn}): the source is
    what `opening` starts the conversation from (an input record, a row and its system
    prompt), so a chunk sent to a Ray replica (without the journal or the input)
    continues a resumed conversation where it stopped. The step holds no conversations:
    `sources()` reads them from the input each time they are needed (the to-do list, the
    progress total, the output), so memory stays flat however many there are.
    Subclasses set `stage`, `roles`, `tokenizer`, `user_params`, `assistant_params` (and
    `max_turns` to stop conversations at that many turns) and define `sources()`,
    `opening(source)` (the conversation as its input starts it, with a `stop_reason` when
    it is not to be grown), `prompt(role, conv)` and `finish`."""

    unit = "turn"
    roles: list[str]
    user_params: SamplingParams
    assistant_params: SamplingParams
    max_turns: int | None = None

    @property
    def entries_per_item(self) -> int:
        return len(self.roles)  # a conversation makes a turn per role at most

    def sources(self) -> Iterator:
        """What each conversation starts from, in order, read as they are asked for."""
        raise NotImplementedError

    def opening(self, source) -> Conversation:
        """The conversation `source` starts (a new object at each call), with a
        `stop_reason` when it is not to be grown."""
        raise NotImplementedError

    def prompt(self, role: str, conv: Conversation) -> str:
        raise NotImplementedError

    def params(self, role: str) -> SamplingParams:
        return self.user_params if role == "user" else self.assistant_params

    def journaled(self, i: int) -> dict[int, dict]:
        """Conversation i's journaled turns as {step: entry}, read back from the journal."""
        done = self.journal.done
        keys = ((step, f"{i}/{step}") for step in range(len(self.roles)))
        return {step: done[key] for step, key in keys if key in done}

    def replayed(self, source, turns: dict[int, dict]) -> tuple[Conversation, bool]:
        """The conversation of `source` with its journaled `turns` applied, and whether it
        needs more."""
        conv = self.opening(source)
        for step in range(len(self.roles)):
            if not growing(conv, self.max_turns):
                return conv, False
            if step not in turns:
                return conv, True
            _apply(conv, turns[step])
        return conv, False

    def todo(self) -> Iterator[tuple[int, object, dict[int, dict]]]:
        for i, source in enumerate(self.sources()):
            turns = self.journaled(i)
            if self.replayed(source, turns)[1]:
                yield i, source, turns

    def progress(self) -> tuple[int, int]:
        """(turns to make at most, turns journaled): a conversation that stops early makes
        fewer, so the bar may end short of its total."""
        roles, total = len(self.roles), 0
        for source in self.sources():
            conv = self.opening(source)
            if growing(conv, self.max_turns):
                left = roles if self.max_turns is None else self.max_turns - len(conv.chat)
                total += min(roles, left)
        return total, len(self.journal.done)

    def make(
        self, engine: Engine, items: list[tuple[int, object, dict[int, dict]]]
    ) -> Iterator[Made]:
        convs = {i: self.opening(source) for i, source, _ in items}
        yield from run_turns(
            engine,
            convs,
            {i: turns for i, _, turns in items},
            self.roles,
            self.prompt,
            self.params,
            self.stage,
            self.max_turns,
        )

    def replay(self) -> Iterator[tuple[object, Conversation]]:
        """(source, conversation as the journal leaves it) of every conversation, in
        order, streamed: what `finish` writes from."""
        for i, source in enumerate(self.sources()):
            yield source, self.replayed(source, self.journaled(i))[0]

    def grown(self) -> tuple[list[Conversation], str | None]:
        """Every conversation as the journal leaves it, all in memory (for tests and
        notebooks; stages write through `replay`), and `last_engine`."""
        return [conv for _, conv in self.replay()], self.last_engine()

    def last_engine(self) -> str | None:
        """The engine that made the latest journaled turn (None when no turn was made:
        every conversation was done or unusable)."""
        latest = self.journal.done.latest()
        return latest.get("engine") if latest else None
