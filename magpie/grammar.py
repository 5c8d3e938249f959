"""Constrained decoding to a JSON schema for the hf engine, through xgrammar.

Why: a small tagger asked in words for JSON gets the format or the label wrong often
(fms-dgt measured ~48% failures with the paper's prompts). Masking, at every step, the
tokens the schema forbids makes every finished completion a document of the schema, so
label fields given as enums can only hold labels of the vocabulary. vLLM does the same
through its own structured outputs (`magpie.engines.vllm`).

xgrammar API used (xgrammar 0.2.x, docs xgrammar.mlc.ai "Workflow of XGrammar"):
`TokenizerInfo.from_huggingface(tokenizer, vocab_size=...)`, `GrammarCompiler(info)`,
`compile_json_schema(schema, any_whitespace=False)`, `GrammarMatcher(compiled,
override_stop_tokens=...)` with `fill_next_token_bitmask`, `accept_token`,
`is_terminated`; `allocate_token_bitmask` and `apply_token_bitmask_inplace(logits, mask,
indices=...)`.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence

import torch


def available() -> bool:
    """Whether xgrammar is importable (the hf engine ignores json_schema otherwise)."""
    return importlib.util.find_spec("xgrammar") is not None


class JsonSchemaGrammar:
    """Compiles schemas for one tokenizer (cached) and hands out per-row matchers."""

    def __init__(self, tokenizer, vocab_size: int):
        import xgrammar as xgr

        self._xgr = xgr
        # vocab_size is the model's logits width, which may exceed len(tokenizer).
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.vocab_size = vocab_size
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=2)
        self._compiled: dict[str, object] = {}
        self._bitmask = None

    def matcher(self, schema: dict, stop_token_ids: Sequence[int] = ()):
        """A fresh matcher for one row. No free whitespace: a small model could loop on it."""
        key = json.dumps(schema, sort_keys=True)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self.compiler.compile_json_schema(schema, any_whitespace=False)
            self._compiled[key] = compiled
        stops = sorted(set(self.info.stop_token_ids) | set(stop_token_ids))
        return self._xgr.GrammarMatcher(compiled, override_stop_tokens=stops)

    def mask_logits(self, logits: torch.Tensor, matchers: Sequence) -> None:
        """Set to -inf, in place, every token the row's matcher forbids (rows without one
        are left alone)."""
        rows = [i for i, m in enumerate(matchers) if m is not None and not m.is_terminated()]
        if not rows:
            return
        if self._bitmask is None or self._bitmask.shape[0] < logits.shape[0]:
            self._bitmask = self._xgr.allocate_token_bitmask(logits.shape[0], self.vocab_size)
        bitmask = self._bitmask[: logits.shape[0]]
        for i in rows:
            matchers[i].fill_next_token_bitmask(bitmask, i)
        self._xgr.apply_token_bitmask_inplace(
            logits, bitmask.to(logits.device), vocab_size=self.vocab_size, indices=rows
        )
