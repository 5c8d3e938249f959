"""The original Magpie's first-token logits processors, defined once for every engine.

- de-markdown: forbid a first token that opens a markdown header ("#", "##", ... up to
  "######", alone or followed by a space, with or without a leading space), so
  instructions do not start as documents. The original hard-coded four Llama-3.1 ids
  ("#", "##", "###", "####"); here the header tokens are found in any tokenizer's
  vocabulary. Tokens such as "#include", "#!" or a hashtag stay allowed.
- flaming tokens: divide the first token's logits by 1.2 (a hotter first token, more
  diverse openings), on top of the sampling temperature.
"""

from __future__ import annotations

import re
from functools import lru_cache

from magpie.records import InputError

FLAMING_TOKENS_FACTOR = 1.2
# A markdown header opener: one to six '#', then a space or nothing (after an optional
# leading space, which tokenizers write as a space or a marker such as 'Ġ' / '▁').
HEADER_TOKEN = re.compile(r"[ \u0120\u2581]?#{1,6}( .*)?", re.DOTALL)


def first_token_processor(logits_processor: bool = False, flaming_tokens: bool = False):
    """The stages' --logits_processor / --flaming_tokens flags as one processor name."""
    if logits_processor and flaming_tokens:
        raise InputError("--logits_processor and --flaming_tokens cannot be used together")
    return "de_markdown" if logits_processor else ("flaming_tokens" if flaming_tokens else None)


def markdown_header_token_ids(tokenizer) -> list[int]:
    """Ids of the tokens that open a markdown header ("#", "## ", " ###" ...)."""
    return list(_header_ids(_vocab_key(tokenizer), tokenizer))


def _vocab_key(tokenizer) -> tuple:
    return (getattr(tokenizer, "name_or_path", ""), len(tokenizer))


@lru_cache(maxsize=8)
def _header_ids(_key: tuple, tokenizer) -> tuple[int, ...]:
    ids = []
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if HEADER_TOKEN.fullmatch(text):
            ids.append(token_id)
    return tuple(ids)
