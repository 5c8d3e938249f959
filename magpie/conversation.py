"""The conversation in a record: read from any input format, written back in any.

Read (first match wins): ShareGPT `conversations` [{from, value}] (or {role, content}),
`messages` or `conversation` [{role, content}], Magpie flat `instruction` / `response`
with `instruction_k` / `response_k` for later turns, and `input` / `output`. The system
turn comes from a system message or the `system_prompt` field; a thinking model's
thoughts from `reasoning` on assistant messages or the flat `reasoning` / `reasoning_k`.
Roles are folded to system / user / assistant (human, gpt, model, bot ... are aliases);
tool and function turns are skipped; any other role, or a turn without text, is an error
(`ConversationError`, naming the field and turn).

One rule says what may be trained on: a complete exchange is a user turn with text
followed directly by an assistant turn with text. A conversation's complete part is its
system turn and its exchanges up to the first one that is not complete, so a trailing
user turn (a follow-up whose answer failed) never reaches a training file. Every stage
(tagging, export, dedup, filters, multi-turn) reads and writes records through here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

from magpie.records import FLAT_KEY, LIST_FIELDS, InputError, where

ROLES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "chatgpt": "assistant",
    "agent": "assistant",
}
SKIPPED_ROLES = {"tool", "function", "ipython", "observation"}
ROLE_TO_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


class ConversationError(ValueError):
    """A record's conversation is malformed; the message names the field and turn."""


class Turn(NamedTuple):
    """One turn: role is system / user / assistant; `reasoning` a thinking model's thoughts."""

    role: str
    text: str
    reasoning: str | None = None


def _filled(text: str | None) -> bool:
    return isinstance(text, str) and bool(text.strip())


@dataclass
class Conversation:
    """The turns of a record (the system turn first, if any) and the field they came from.

    A conversation being generated (magpie.turns) also carries why it stopped
    early (`stop_reason`, e.g. "response 2 unfinished"), written to records as
    `conversation_stop_reason`; None while it may go on."""

    turns: list[Turn]
    source: str | None = None
    stop_reason: str | None = None

    def __post_init__(self) -> None:
        self.turns = [t if isinstance(t, Turn) else Turn(*t) for t in self.turns]

    @classmethod
    def of_messages(cls, messages: list[dict], source: str | None = None) -> Conversation:
        """A conversation from well-formed [{role, content, reasoning?}] messages."""
        return cls([Turn(m["role"], m["content"], m.get("reasoning")) for m in messages], source)

    # ------------------------------------------------------------------ reading
    @property
    def chat(self) -> list[Turn]:
        """The turns after the system turn: every turn but the system's."""
        return [t for t in self.turns if t.role != "system"]

    def texts(self, role: str) -> list[str]:
        """The texts of every turn of `role`."""
        return [t.text for t in self.turns if t.role == role]

    @property
    def system(self) -> str | None:
        """The system turn's text, or None."""
        return next((t.text for t in self.turns if t.role == "system" and _filled(t.text)), None)

    @property
    def first_user(self) -> str:
        """The first user turn with text ('' when there is none)."""
        return next((t.text for t in self.turns if t.role == "user" and _filled(t.text)), "")

    @property
    def multi_turn(self) -> bool:
        return len([t for t in self.texts("user") if _filled(t)]) > 1

    def exchanges(self) -> list[tuple[Turn, Turn]]:
        """The complete exchanges, in order, up to the first incomplete one: a user turn
        with text followed directly by an assistant turn with text."""
        chat = self.chat
        out = []
        for k in range(0, len(chat) - 1, 2):
            user, answer = chat[k], chat[k + 1]
            if user.role != "user" or answer.role != "assistant":
                break
            if not (_filled(user.text) and _filled(answer.text)):
                break
            out.append((user, answer))
        return out

    @property
    def has_response(self) -> bool:
        """True when at least one exchange is complete (there is something to train on)."""
        return bool(self.exchanges())

    @property
    def is_complete(self) -> bool:
        """True when every turn after the system turn belongs to a complete exchange."""
        chat = self.chat
        return bool(chat) and len(chat) == 2 * len(self.exchanges())

    def complete(self) -> Conversation:
        """The system turn and the complete exchanges: what may reach a training file."""
        system = [t for t in self.turns if t.role == "system"][:1]
        turns = [t for pair in self.exchanges() for t in pair]
        return Conversation(system + turns, self.source)

    def first_exchange(self) -> Conversation:
        """The first user turn and the assistant's answer to it (no system turn)."""
        chat = self.chat
        start = next((i for i, t in enumerate(chat) if t.role == "user" and _filled(t.text)), None)
        if start is None:
            return Conversation([])
        end = next((i for i in range(start + 1, len(chat)) if chat[i].role == "user"), len(chat))
        return Conversation(chat[start:end], self.source)

    def messages(self) -> list[dict]:
        """Alternating user/assistant chat messages from the first user turn: Llama Guard
        and most reward-model templates accept nothing else (no system turn; consecutive
        turns of one role are joined)."""
        out: list[dict] = []
        for t in self.turns:
            if t.role == "system" or not _filled(t.text) or (not out and t.role != "user"):
                continue
            if out and out[-1]["role"] == t.role:
                out[-1]["content"] += "\n\n" + t.text.strip()
            else:
                out.append({"role": t.role, "content": t.text.strip()})
        return out

    def transcript(self) -> str:
        """The whole conversation as plain text, for judges that read all of it."""
        names = {"system": "System", "user": "User", "assistant": "Assistant"}
        return "\n\n".join(
            f"[{names[t.role]}]\n{t.text.strip()}" for t in self.turns if _filled(t.text)
        )


# ---------------------------------------------------------------------- reading records
def _content(value) -> str | None:
    """Text of a message content: a string, or OpenAI-style [{type: text, text}] parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [p.get("text") for p in value if isinstance(p, dict)]
        if parts and all(isinstance(p, str) for p in parts):
            return "\n".join(parts)
    return None


def _from_list(record: dict, key: str) -> list[Turn]:
    items = record[key]
    if not isinstance(items, list):
        raise ConversationError(f"'{key}' is not a list")
    turns: list[Turn] = []
    answers = 0
    for n, m in enumerate(items):
        if not isinstance(m, dict):
            raise ConversationError(f"{key}: bad turn {n} ({m!r}): not an object")
        name = m.get("from", m.get("role"))
        if isinstance(name, str) and name.lower() in SKIPPED_ROLES:
            continue
        role = ROLES.get(name.lower()) if isinstance(name, str) else None
        if role is None:
            raise ConversationError(
                f"{key}: bad turn {n} ({m!r}): role {name!r} is not system, user (human) "
                "or assistant (gpt)"
            )
        text = _content(m["value"] if "value" in m else m.get("content"))
        if text is None:
            raise ConversationError(f"{key}: turn {n} without text ({m!r})")
        reasoning = m.get("reasoning") if role == "assistant" else None
        if role == "assistant":
            answers += 1
            if reasoning is None:  # older files kept the thoughts in the flat fields only
                suffix = "" if answers == 1 else f"_{answers}"
                if record.get(f"response{suffix}") == text:
                    reasoning = record.get(f"reasoning{suffix}")
        turns.append(Turn(role, text, reasoning if isinstance(reasoning, str) else None))
    return turns


def _from_flat(record: dict) -> list[Turn]:
    turns: list[Turn] = []
    k = 1
    while True:
        suffix = "" if k == 1 else f"_{k}"
        instruction, response = record.get(f"instruction{suffix}"), record.get(f"response{suffix}")
        for name, value in ((f"instruction{suffix}", instruction), (f"response{suffix}", response)):
            if value is not None and not isinstance(value, str):
                raise ConversationError(f"field '{name}' is not a string")
        if instruction is None:
            break
        turns.append(Turn("user", instruction))
        if response is None:
            break
        reasoning = record.get(f"reasoning{suffix}")
        turns.append(Turn("assistant", response, reasoning if isinstance(reasoning, str) else None))
        k += 1
    return turns


def read(record: dict) -> Conversation:
    """The conversation of a record in any accepted format (see the module docstring).

    A record with none of the fields gives an empty conversation with `source` None;
    a malformed one raises ConversationError.
    """
    source = next((k for k in LIST_FIELDS if record.get(k) is not None), None)
    if source is not None:
        turns = _from_list(record, source)
    elif "instruction" in record:
        source, turns = "instruction", _from_flat(record)
    elif "input" in record:
        source, turns = "input", []
        for role, name in (("user", "input"), ("assistant", "output")):
            value = record.get(name)
            if value is None:
                break
            if not isinstance(value, str):
                raise ConversationError(f"field '{name}' is not a string")
            turns.append(Turn(role, value))
    else:
        return Conversation([])
    if not any(t.role == "system" for t in turns):
        system = record.get("system_prompt")
        if _filled(system):
            turns.insert(0, Turn("system", system))
    return Conversation(turns, source)


def read_all(records: list[dict], path: str | os.PathLike) -> list[Conversation]:
    """Every record's conversation; InputError naming the file, record and field of the
    first malformed one."""
    out = []
    for i, record in enumerate(records):
        try:
            out.append(read(record))
        except ConversationError as e:
            raise InputError(f"{where(path, i)}: {e}") from None
    return out


def conversation_of(record: dict) -> tuple[Conversation | None, str | None]:
    """The record's conversation, or None and the reason there is none ("no_text: ...")."""
    try:
        conv = read(record)
    except ConversationError as e:
        return None, f"no_text: {e}"
    if conv.source is None:
        return None, "no_text: no conversations, messages, conversation, instruction or input"
    if not conv.first_user:
        if conv.source in LIST_FIELDS:
            return None, f"no_text: '{conv.source}' has no user turn with text"
        return None, f"no_text: '{conv.source}' is missing or empty"
    return conv, None


# ---------------------------------------------------------------------- writing records
def with_thoughts(answer: str, reasoning: str | None) -> str:
    """An answer with a thinking model's reasoning before it, as "<think>...</think>"."""
    if not isinstance(reasoning, str) or not reasoning.strip():
        return answer
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{answer}"


def message_list(conv: Conversation, include_system: bool = True) -> list[dict]:
    """[{role, content}] with `reasoning` on the assistant turns that have it."""
    out = []
    for t in conv.turns:
        if t.role == "system" and not include_system:
            continue
        message = {"role": t.role, "content": t.text}
        if t.reasoning is not None:
            message["reasoning"] = t.reasoning
        out.append(message)
    return out


def openai_messages(conv: Conversation, with_reasoning: bool = False) -> list[dict]:
    """OpenAI chat fine-tuning messages [{role, content}]; `with_reasoning` puts each
    answer's thoughts back before it as "<think>...</think>"."""
    return [
        {
            "role": t.role,
            "content": with_thoughts(t.text, t.reasoning) if with_reasoning else t.text,
        }
        for t in conv.turns
    ]


def sharegpt_turns(
    conv: Conversation, include_system: bool = True, with_reasoning: bool = False
) -> list[dict]:
    """ShareGPT [{from, value}] with `from` in system | human | gpt. An answer's thoughts
    go before it as "<think>...</think>" with `with_reasoning`, else under `reasoning`."""
    out = []
    for t in conv.turns:
        if t.role == "system" and not include_system:
            continue
        value = with_thoughts(t.text, t.reasoning) if with_reasoning else t.text
        item = {"from": ROLE_TO_FROM[t.role], "value": value}
        if t.reasoning is not None and not with_reasoning:
            item["reasoning"] = t.reasoning
        out.append(item)
    return out


def flat_fields(conv: Conversation) -> dict:
    """The original's flat keys for the complete exchanges: instruction, response,
    reasoning (when there are thoughts), instruction_2, response_2, reasoning_2, ..."""
    out: dict = {}
    for k, (user, answer) in enumerate(conv.exchanges(), start=1):
        suffix = "" if k == 1 else f"_{k}"
        out[f"instruction{suffix}"] = user.text
        out[f"response{suffix}"] = answer.text
        if answer.reasoning is not None:
            out[f"reasoning{suffix}"] = answer.reasoning
    return out


def without_stale_turns(record: dict, exchanges: int) -> dict:
    """The record without flat turn keys of exchanges after the first `exchanges` (the
    first exchange's keys stay: an instruction without answer is still an instruction)."""
    out = {}
    for key, value in record.items():
        match = FLAT_KEY.match(key)
        if match and match.group(2) and int(match.group(2)) > max(exchanges, 1):
            continue
        out[key] = value
    return out


def write_back(record: dict, conv: Conversation) -> dict:
    """The record holding the complete part of `conv` in every shape it carries: the flat
    keys and `conversation` (always), and `conversations` / `messages` when present, each
    in its own item shape. Other fields are kept; stale flat keys are removed."""
    done = conv.complete()
    out = without_stale_turns(record, len(done.exchanges()))
    out.update(flat_fields(done))
    for key in LIST_FIELDS:
        old = record.get(key)
        if key != "conversation" and not isinstance(old, list):
            continue
        had_system = isinstance(old, list) and any(
            isinstance(m, dict) and ROLES.get(str(m.get("from", m.get("role"))).lower()) == "system"
            for m in old
        )
        messages = message_list(done, include_system=had_system)
        if key == "conversations" and not any(isinstance(m, dict) and "role" in m for m in old):
            messages = sharegpt_turns(done, include_system=had_system)
        out[key] = messages
    return out
