"""Conversations: follow-up user turns, multi-turn extension, one-pass steered dialogues.

The follow-up user turn is extracted Magpie-style: the conversation so far, rendered by
the model's own chat template, followed by the header of a new user turn. We get that
string by asking the template to render one more user message and cutting at its text,
so the prompt is exactly what the template would make — for every family (Llama-3,
ChatML, Gemma, Mistral, Phi-3, ...), never a dangling assistant header and never a
second BOS (the mistakes of appending a pre-query template after a generation prompt).

Turns are generated step by step across the dialogues of a chunk (all first user turns,
then all first replies, ...; with the local executor one chunk holds them all), so the
engine batches them; each finished turn goes to the journal, so a killed run resumes at
the turn it was on (`DialogueStep`). A turn that comes back empty or unfinished ends that
conversation: the record keeps the turns it has and `conversation_stop_reason` says why;
other records are untouched.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from magpie.engines.base import Engine, SamplingParams, item_seeds
from magpie.executor import Made, Step
from magpie.profiles import TEMPLATE_DATE, Profile, fixed_date_template
from magpie.prompt_text import render_with_data
from magpie.records import InputError
from magpie.responses import THINK_OPEN, read_completion

# The paper's multi-turn system prompt, with the original's typos ("Al assistant",
# "thorough,relevant") fixed on purpose.
MULTI_TURN_SYSTEM_PROMPT = (
    "You are a helpful AI assistant. The user will engage in a multi-round conversation "
    "with you, asking initial questions and following up with additional related "
    "questions. Your goal is to provide thorough, relevant and insightful responses to "
    "help the user with their queries."
)
_SENTINEL = "MAGPIENEXTUSERTURN7Q"


def render(tokenizer, messages: list[dict], add_generation_prompt: bool, **template_kwargs) -> str:
    """The tokenizer's chat template applied to messages (fixed date for dated templates;
    `template_kwargs` such as enable_thinking go to the template). Contents holding a
    special-token string come back as `ChatText` with their spans marked as data, so
    engines tokenise them as text (magpie.prompt_text)."""
    return render_with_data(
        tokenizer,
        lambda ms: _render(tokenizer, ms, add_generation_prompt, **template_kwargs),
        messages,
    )


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool, **template_kwargs) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("the model's tokenizer has no chat template to render conversations")
    template, dates = fixed_date_template(tokenizer.chat_template)
    if dates:
        template_kwargs = {**template_kwargs, "chat_template": template, **dates}
    try:
        return tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            date_string=TEMPLATE_DATE,
            **template_kwargs,
        )
    except Exception as e:  # templates raise on roles they do not support (Gemma: system)
        if type(e).__name__ in ("TemplateError", "TemplateSyntaxError", "UndefinedError"):
            raise InputError(f"the chat template rejects this conversation: {e}") from None
        raise


def user_turn_prompt(tokenizer, messages: list[dict]) -> str:
    """`messages` rendered as a closed conversation plus the header of the next user turn."""
    rendered = render(tokenizer, [*messages, {"role": "user", "content": _SENTINEL}], False)
    cut = rendered.find(_SENTINEL)
    if cut == -1:
        raise InputError("the chat template drops user messages; cannot extract user turns")
    return rendered[:cut]


def assistant_turn_prompt(tokenizer, messages: list[dict], **template_kwargs) -> str:
    """`messages` rendered with the assistant's turn opened."""
    return render(tokenizer, messages, True, **template_kwargs)


def supports_system(tokenizer) -> bool:
    """Whether the chat template renders a system turn (Gemma's refuses one)."""
    try:
        user_turn_prompt(tokenizer, [{"role": "system", "content": "S"}])
    except InputError:
        return False
    return True


def first_user_prompt(tokenizer, profile: Profile, system: str | None) -> str:
    """The first user turn: the registry's pre-query template, or the template with a
    system prompt."""
    if system is None:
        return profile.pre_query_template
    return user_turn_prompt(tokenizer, [{"role": "system", "content": system}])


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
        import yaml

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
@dataclass
class Dialogue:
    """One conversation being grown. `messages` holds the system message (if any) first."""

    messages: list[dict] = field(default_factory=list)
    stop_reason: str | None = None
    limit: int | None = None  # turns (system excluded) at which it is long enough

    @property
    def growing(self) -> bool:
        return self.stop_reason is None and (self.limit is None or len(self.turns) < self.limit)

    @property
    def turns(self) -> list[dict]:
        return [m for m in self.messages if m["role"] != "system"]


def run_turns(
    engine: Engine,
    dialogues: dict[int, Dialogue],
    journaled: dict[int, dict[int, dict]],
    roles: Sequence[str],
    prompt_for: Callable[[str, Dialogue], str],
    params_for: Callable[[str], SamplingParams],
    stage: str,
) -> Iterator[Made]:
    """Grow the dialogues {index: dialogue} by `roles` (e.g. user, assistant, user ...),
    step by step, all of them in one engine call per step; yield each new turn's entry
    under "i/step". A turn in `journaled` ({index: {step: entry}}) is applied, not made.

    Dialogue i's turn at `step` draws from the seed of item i of "<stage>/<step>"
    (`item_seeds`, with the run seed from `params_for(role).seed`): the same text whichever
    dialogues share its call, and after a resume."""
    for step, role in enumerate(roles):
        todo = []
        for i, d in dialogues.items():
            if not d.growing:
                continue
            entry = journaled.get(i, {}).get(step)
            if entry is not None:
                _apply(d, entry)
            else:
                todo.append(i)
        if not todo:
            continue
        prompts = [prompt_for(role, dialogues[i]) for i in todo]
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
                "turn": len(dialogues[i].turns) // 2 + 1,
                "engine": engine.name,  # for the records' configs (finish has no engine)
            }
            if reasoning is not None:
                entry["reasoning"] = reasoning
            _apply(dialogues[i], entry)
            yield f"{i}/{step}", entry, c.completion_tokens


def _apply(d: Dialogue, entry: dict) -> None:
    if entry["failure"]:
        name = "instruction" if entry["role"] == "user" else "response"
        d.stop_reason = f"{name} {entry['turn']} {entry['failure']}"
    else:
        message = {"role": entry["role"], "content": entry["content"]}
        if entry.get("reasoning") is not None:  # a thinking model's thoughts, kept aside
            message["reasoning"] = entry["reasoning"]
        d.messages.append(message)


class DialogueStep(Step):
    """A stage that grows dialogues by `roles`, one journal entry per turn ("i/step").

    Items are (dialogue index, {step: its journaled turn}), so that a chunk sent to a Ray
    replica (without the journal) continues a resumed dialogue where it stopped.
    Subclasses set `stage`, `roles`, `tokenizer`, `user_params`, `assistant_params` and
    define `dialogue(i)` (dialogue i as its input starts it), `prompt(role, d)`,
    `count()` (how many dialogues) and `finish`."""

    unit = "turn"
    roles: list[str]
    user_params: SamplingParams
    assistant_params: SamplingParams

    def count(self) -> int:
        """How many dialogues."""
        raise NotImplementedError

    def dialogue(self, i: int) -> Dialogue:
        raise NotImplementedError

    def prompt(self, role: str, d: Dialogue) -> str:
        raise NotImplementedError

    def params(self, role: str) -> SamplingParams:
        return self.user_params if role == "user" else self.assistant_params

    def journaled(self) -> dict[int, dict[int, dict]]:
        """The journal's turns as {dialogue index: {step: entry}}."""
        turns: dict[int, dict[int, dict]] = {}
        for key, entry in self.journal.done.items():
            i, step = key.split("/")
            turns.setdefault(int(i), {})[int(step)] = entry
        return turns

    def replayed(self, i: int, turns: dict[int, dict]) -> tuple[Dialogue, bool]:
        """Dialogue i with its journaled `turns` applied, and whether it needs more."""
        d = self.dialogue(i)
        for step in range(len(self.roles)):
            if not d.growing:
                return d, False
            if step not in turns:
                return d, True
            _apply(d, turns[step])
        return d, False

    def todo(self) -> list[tuple[int, dict[int, dict]]]:
        journaled = self.journaled()
        items = [(i, journaled.get(i, {})) for i in range(self.count())]
        return [(i, turns) for i, turns in items if self.replayed(i, turns)[1]]

    def progress(self) -> tuple[int, int]:
        """(turns to make at most, turns journaled): a dialogue that stops early makes
        fewer, so the bar may end short of its total."""
        roles, total = len(self.roles), 0
        for i in range(self.count()):
            d = self.dialogue(i)
            if d.growing:
                total += roles if d.limit is None else min(roles, d.limit - len(d.turns))
        return total, len(self.journal.done)

    def make(self, engine: Engine, items: list[tuple[int, dict[int, dict]]]) -> Iterator[Made]:
        dialogues = {i: self.dialogue(i) for i, _ in items}
        yield from run_turns(
            engine, dialogues, dict(items), self.roles, self.prompt, self.params, self.stage
        )

    def grown(self) -> tuple[list[Dialogue], str | None]:
        """Every dialogue as the journal leaves it, and the engine that made the latest
        turn (None when no turn was made: every dialogue was done or unusable)."""
        journaled = self.journaled()
        dialogues = [self.replayed(i, journaled.get(i, {}))[0] for i in range(self.count())]
        engines = [e["engine"] for e in self.journal.done.values() if e.get("engine")]
        return dialogues, engines[-1] if engines else None
