"""Completion parsing: a model's reply read as (reasoning, answer, flag).

Thinking models (Qwen3, QwQ, DeepSeek-R1 and others) write "<think>...</think>" before
the answer, or their template opens the block in the prompt: the thoughts are the
reasoning and the answer follows "</think>". Harmony models (gpt-oss) answer in channels:
`final` is the answer, `analysis` (and `commentary`) the reasoning; a reply with no final
message (only a channel name, or cut mid-analysis) is unfinished, never an answer.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from magpie.engines.base import Completion

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# Harmony (gpt-oss): an assistant turn is a series of messages
# "<|start|>assistant<|channel|>NAME<|message|>TEXT<|end|>", the last one ended by
# <|return|> (end of the answer) or <|call|> (a tool call) instead of <|end|>. The `final`
# channel is the answer; `analysis` (and `commentary`) are reasoning. Engines that drop
# special tokens from the text leave "analysisTEXTassistantfinalTEXT".
HARMONY_CHANNELS = ("analysis", "commentary", "final")
HARMONY_TOKENS = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>")
_HARMONY_MESSAGE = re.compile(
    r"(?:<\|start\|>[^<]*)?<\|channel\|>\s*(\w+)[^<]*(?:<\|constrain\|>[^<]*)?<\|message\|>"
    r"(.*?)(<\|end\|>|<\|return\|>|<\|call\|>|(?=<\|start\|>)|$)",
    re.DOTALL,
)
# Stripped form: a channel name glued to its text (never a word of an ordinary answer:
# "analysisThe user asks", "finalHello"), or a channel name alone.
_STRIPPED_START = re.compile(r"(analysis|commentary|final)(?=$|[^a-z\s.,;:!?'-])")
_STRIPPED_NEXT = re.compile(r"assistant(?:\s*to=\S+)?(analysis|commentary|final)(?=$|[^a-z])")


def _split_harmony(text: str) -> tuple[str | None, str, bool] | None:
    """(reasoning, answer, closed) of a harmony reply, or None when it is not one.
    `closed` is whether a `final` message was written."""
    body = text.strip()
    if "<|channel|>" in body or "<|message|>" in body:
        messages = [(m.group(1), m.group(2)) for m in _HARMONY_MESSAGE.finditer(body)]
        if not messages:  # header tokens without a message body: nothing was answered
            return None, "", False
    else:
        first = _STRIPPED_START.match(body)
        if first is None:
            return None
        messages, channel, pos = [], first.group(1), first.end()
        for m in _STRIPPED_NEXT.finditer(body, pos):
            messages.append((channel, body[pos : m.start()]))
            channel, pos = m.group(1), m.end()
        messages.append((channel, body[pos:]))
    thoughts = [t.strip() for ch, t in messages if ch != "final" and t.strip()]
    finals = [t.strip() for ch, t in messages if ch == "final"]
    return "\n\n".join(thoughts) or None, finals[-1] if finals else "", bool(finals)


def split_reasoning(text: str, opened: bool = False) -> tuple[str | None, str, bool]:
    """(reasoning, answer, closed) of a response. A thinking model's response starts with
    "<think>" (or the prompt ended with it: `opened`); the answer follows "</think>".
    A harmony reply (gpt-oss) keeps its `final` channel as the answer and its `analysis`
    as the reasoning; `closed` is False when it has no final message (a reply that is
    only a channel name, or stopped mid-analysis). Any other response is
    (None, text, True)."""
    body = text.lstrip()
    if not (opened or body.startswith(THINK_OPEN)):
        harmony = _split_harmony(text)
        return harmony if harmony is not None else (None, text.strip(), True)
    if body.startswith(THINK_OPEN):
        body = body[len(THINK_OPEN) :]
    thoughts, closed, answer = body.partition(THINK_CLOSE)
    return thoughts.strip() or None, answer.strip(), bool(closed)


def read_completion(
    c: Completion, opened: bool = False, thinking: bool = True
) -> tuple[str | None, str, str | None]:
    """(reasoning, text, flag) of a completion: the flag is "unfinished" when it hit
    max_tokens or stopped mid-thought, "repetitive" when the engine stopped it looping,
    "empty" when no text is left, the engine's reason
    ("prompt_too_long", "empty_prompt") when the prompt was not sent, else None. With
    `thinking` off (user turns) the text is taken as it is."""
    if c.finish_reason == "rejected":
        return None, "", str(c.stop_reason)
    if thinking:
        reasoning, text, closed = split_reasoning(c.text, opened)
    else:
        reasoning, text, closed = None, c.text.strip(), True
    if c.finish_reason == "repetitive":
        return reasoning, text, "repetitive"
    if c.finish_reason == "length" or not closed:
        return reasoning, text, "unfinished"
    return reasoning, text, None if text else "empty"
