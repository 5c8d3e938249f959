"""Read the conversation out of a record, whatever shape it comes in.

Accepted (first match wins): ShareGPT `conversations` [{from, value}] (or {role,
content}), `messages` or `conversation` [{role, content}], Magpie `instruction` /
`response` with `instruction_k` / `response_k` for later turns, and `input` / `output`.
Roles are folded to system / user / assistant; other roles (tool, function) are skipped.
A record with nothing usable gets a reason instead, which the stage records.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class Conversation:
    """Turns as (role, text), role one of system / user / assistant."""

    turns: list[tuple[str, str]]

    def texts(self, role: str) -> list[str]:
        return [t for r, t in self.turns if r == role]

    @property
    def first_user(self) -> str:
        users = self.texts("user")
        return users[0] if users else ""

    @property
    def multi_turn(self) -> bool:
        return len(self.texts("user")) > 1

    @property
    def has_response(self) -> bool:
        return bool(self.texts("assistant"))

    def messages(self) -> list[dict]:
        """Alternating user/assistant chat messages from the first user turn: Llama Guard
        and most reward-model templates accept nothing else (no system turn; consecutive
        turns of one role are joined)."""
        out: list[dict] = []
        for r, t in self.turns:
            if r == "system" or (not out and r != "user"):
                continue
            if out and out[-1]["role"] == r:
                out[-1]["content"] += "\n\n" + t
            else:
                out.append({"role": r, "content": t})
        return out

    def transcript(self) -> str:
        """The whole conversation as plain text, for judges that read all of it."""
        names = {"system": "System", "user": "User", "assistant": "Assistant"}
        return "\n\n".join(f"[{names[r]}]\n{t}" for r, t in self.turns)

    def first_exchange(self) -> Conversation:
        """The first user turn and the assistant's answer to it."""
        users = [i for i, (r, _) in enumerate(self.turns) if r == "user"]
        if not users:
            return Conversation([])
        end = users[1] if len(users) > 1 else len(self.turns)
        return Conversation([(r, t) for r, t in self.turns[users[0] : end] if r != "system"])


def _content(value) -> str | None:
    """Text of a message content: a string, or OpenAI-style [{type: text, text}] parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [p.get("text") for p in value if isinstance(p, dict)]
        if parts and all(isinstance(p, str) for p in parts):
            return "\n".join(parts)
    return None


def _from_list(items, key: str) -> tuple[Conversation | None, str | None]:
    if not isinstance(items, list):
        return None, f"no_text: '{key}' is not a list"
    turns = []
    for n, m in enumerate(items):
        if not isinstance(m, dict):
            return None, f"no_text: '{key}' item {n} is not an object"
        role = m.get("from", m.get("role", m.get("speaker")))
        role = ROLES.get(str(role).lower()) if role is not None else None
        text = _content(m.get("value", m.get("content", m.get("text"))))
        if role is not None and text is not None and text.strip():
            turns.append((role, text.strip()))
    return Conversation(turns), None


def _magpie_turns(record: dict) -> list[tuple[str, str]]:
    turns, k = [], 1
    while True:
        suffix = "" if k == 1 else f"_{k}"
        ins, res = record.get(f"instruction{suffix}"), record.get(f"response{suffix}")
        if not isinstance(ins, str) or not ins.strip():
            break
        turns.append(("user", ins.strip()))
        if not isinstance(res, str) or not res.strip():
            break
        turns.append(("assistant", res.strip()))
        k += 1
    return turns


def conversation_of(record: dict) -> tuple[Conversation | None, str | None]:
    """The record's conversation, or None and the reason there is none."""
    for key in ("conversations", "messages", "conversation"):
        if key in record and record[key] is not None:
            conv, reason = _from_list(record[key], key)
            if conv is None:
                return None, reason
            if not conv.texts("user"):
                return None, f"no_text: '{key}' has no user turn with text"
            return conv, None
    if "instruction" in record:
        turns = _magpie_turns(record)
        if not turns:
            return None, "no_text: 'instruction' is missing or empty"
        return Conversation(turns), None
    if "input" in record:
        ins, out = record.get("input"), record.get("output")
        if not isinstance(ins, str) or not ins.strip():
            return None, "no_text: 'input' is missing or empty"
        turns = [("user", ins.strip())]
        if isinstance(out, str) and out.strip():
            turns.append(("assistant", out.strip()))
        return Conversation(turns), None
    return None, "no_text: no conversations, messages, conversation, instruction or input field"
