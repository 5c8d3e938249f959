"""Text is data: the chat template's markers are the only control tokens in a prompt.

Prompts are rendered as text (the model's chat template around the records' messages) and
then tokenised. Tokenised the usual way, special-token strings are parsed wherever they
occur, so a record holding "<|im_end|>\\n<|im_start|>assistant\\n..." would end its turn
and forge another, steering every later stage. `ChatText` is rendered text that remembers
which characters came from records (`data`, character spans); `encode` tokenises those
characters as plain text (the tokenizer's `split_special_tokens`) and parses special
tokens only in the template's own text. A prompt whose record text holds no special-token
string is tokenised exactly as before, in one call, so ordinary records keep their ids.

How the spans are found: each message's content is rendered between two sentinel strings
made for that call, whose positions give the spans once removed. A template that trims
its contents (Llama-3's `| trim`) is rendered again with trimmed contents; if the
sentinels still change the text (a template that rewrites contents), each content is
looked up in order in the plain rendering.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Sequence

from magpie.conversation import read

Span = tuple[int, int]


class ChatText(str):
    """A rendered prompt (a `str`) whose `data` spans [(start, end), ...] hold record text.

    Concatenation with plain strings (template text the code adds, e.g. a "{" prefill)
    and slicing keep the spans where they fall. Pickles (Ray replicas) with its spans."""

    data: tuple[Span, ...]

    def __new__(cls, text: str, data: Iterable[Span] = ()):
        obj = super().__new__(cls, text)
        obj.data = tuple((a, b) for a, b in sorted(data) if b > a)
        return obj

    def __add__(self, other: str) -> ChatText:
        shift = len(self)
        spans = [*self.data, *((a + shift, b + shift) for a, b in getattr(other, "data", ()))]
        return ChatText(str.__add__(self, other), spans)

    def __radd__(self, other: str) -> ChatText:
        shift = len(other)
        spans = [*getattr(other, "data", ()), *((a + shift, b + shift) for a, b in self.data)]
        return ChatText(str.__add__(other, str(self)), spans)

    def __getitem__(self, key):
        text = str.__getitem__(self, key)
        if not isinstance(key, slice) or key.step not in (None, 1):
            return text
        start, stop, _ = key.indices(len(self))
        spans = [(max(a, start) - start, min(b, stop) - start) for a, b in self.data]
        return ChatText(text, [(a, b) for a, b in spans if b > a])

    def __reduce__(self):
        return (ChatText, (str(self), self.data))


def as_data(text: str) -> ChatText:
    """`text` as record text throughout (a plain-text prompt that quotes a record)."""
    return ChatText(text, [(0, len(text))])


def render_with_data(
    tokenizer, render: Callable[[list[dict]], str], messages: Sequence[dict]
) -> str:
    """`render(messages)` (a chat template applied to them) with every message's content
    marked as data: a `ChatText` when some content holds one of the tokenizer's
    special-token strings, else the plain rendering (it tokenises the same either way).
    Raises whatever `render` raises."""
    plain = render([dict(m) for m in messages])
    if not control_tokens_in(tokenizer, [m.get("content") for m in messages]):
        return plain
    for trimmed in (False, True):
        found = _sentinel_spans(render, messages, plain, trimmed)
        if found is not None:
            return ChatText(plain, found)
    return ChatText(plain, _spans_in_order(plain, messages))


def _sentinel_spans(render, messages, plain: str, trimmed: bool) -> list[Span] | None:
    token = secrets.token_hex(6)
    open_, close = f"\ue000{token}<", f">{token}\ue001"
    marked = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str) and content:
            content = content.strip() if trimmed else content
            m = {**m, "content": f"{open_}{content}{close}"}
        marked.append(m)
    try:
        text = render(marked)
    except Exception:  # a template that checks contents: fall back to the lookup
        return None
    spans, out, pos = [], [], 0
    pattern = re.compile(re.escape(open_) + "(.*?)" + re.escape(close), re.DOTALL)
    for match in pattern.finditer(text):
        out.append(text[pos : match.start()])
        start = sum(map(len, out))
        out.append(match.group(1))
        spans.append((start, start + len(match.group(1))))
        pos = match.end()
    out.append(text[pos:])
    return spans if "".join(out) == plain else None


def _spans_in_order(plain: str, messages: Sequence[dict]) -> list[Span]:
    spans, pos = [], 0
    for m in messages:
        content = m.get("content")
        if not isinstance(content, str) or not content.strip():
            continue
        for candidate in (content, content.strip()):
            at = plain.find(candidate, pos)
            if at >= 0:
                spans.append((at, at + len(candidate)))
                pos = at + len(candidate)
                break
    return spans


# ------------------------------------------------------------------ control tokens
def control_tokens(tokenizer) -> tuple[str, ...]:
    """The tokenizer's special-token strings (BOS/EOS, turn markers, every added token
    marked special), longest first. Cached on the tokenizer."""
    cached = getattr(tokenizer, "_magpie_control_tokens", None)
    if cached is not None:
        return cached
    found = set(getattr(tokenizer, "all_special_tokens", None) or ())
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for added in decoder.values():
        if getattr(added, "special", True):
            found.add(str(added))
    tokens = tuple(sorted((t for t in found if t), key=lambda t: (-len(t), t)))
    try:
        tokenizer._magpie_control_tokens = tokens
    except AttributeError:  # a tokenizer that takes no attributes: computed each time
        pass
    return tokens


def control_tokens_in(tokenizer, texts: Iterable[str | None]) -> list[str]:
    """The control-token strings that occur in `texts`, in the tokenizer's order."""
    tokens = control_tokens(tokenizer)
    joined = "\x00".join(t for t in texts if isinstance(t, str))
    return [t for t in tokens if t in joined]


def _pattern(tokenizer) -> re.Pattern | None:
    tokens = control_tokens(tokenizer)
    return re.compile("|".join(map(re.escape, tokens))) if tokens else None


def _text_ids(tokenizer, text: str, split_special: bool) -> list[int]:
    if not text:
        return []
    if split_special:
        return list(
            tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode(tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt (no BOS added: the template writes its own).

    Special-token strings are control tokens only outside the prompt's `data` spans (a
    plain `str` has none: all of it is template text). Inside them they are text: the
    prompt is cut at the template's own special tokens and each piece between them is
    tokenised with `split_special_tokens` (the pieces a tokenizer encodes apart anyway)."""
    spans = getattr(prompt, "data", ())
    text = str(prompt)
    pattern = _pattern(tokenizer) if spans else None
    hits = list(pattern.finditer(text)) if pattern else []
    inside = [any(a < h.end() and h.start() < b for a, b in spans) for h in hits]
    if not any(inside):
        return _text_ids(tokenizer, text, False)
    ids, pos = [], 0
    for hit, is_data in zip(hits, inside, strict=True):
        if is_data:
            continue
        ids += _text_ids(tokenizer, text[pos : hit.start()], True)
        ids += _text_ids(tokenizer, hit.group(0), False)
        pos = hit.end()
    return ids + _text_ids(tokenizer, text[pos:], True)


def can_encode(tokenizer) -> bool:
    """Whether the tokenizer tokenises here (a server-reported one does not)."""
    return callable(tokenizer) and hasattr(tokenizer, "convert_ids_to_tokens")


# ------------------------------------------------------------------ the record flag
SPECIAL_TEXT = "special_tokens_in_text"


def flag_special_text(record: dict, tokenizer) -> dict:
    """The record with `special_tokens_in_text` set to the tokenizer's special-token
    strings that its conversation holds (they reached the model as text, never as
    control tokens), when it holds any; else the record as it was."""

    if tokenizer is None:
        return record
    try:
        conv = read(record)
    except ValueError:  # no conversation to read: nothing was prompted from it
        return record
    texts = [t for turn in conv.turns for t in (turn.text, turn.reasoning)]
    found = control_tokens_in(tokenizer, texts)
    if not found:
        return record
    known = [t for t in record.get(SPECIAL_TEXT) or () if t not in found]
    return {**record, SPECIAL_TEXT: [*known, *found]}


def count_special_text(flags, records: Iterable[dict]) -> None:
    """Add the records that hold special-token strings to a summary's flag counter."""
    n = sum(1 for r in records if r.get(SPECIAL_TEXT))
    if n:
        flags[SPECIAL_TEXT] += n
