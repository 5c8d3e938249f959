"""transformers engine: CPU or CUDA, continuous batching with a left-padded KV cache.

Why not `model.generate`: a static batch runs until its slowest sequence ends, and the
original Magpie decoded every sequence to max_tokens before cutting at stop strings.
Here each row of the batch is a slot. A row that hits a stop id or stop string is done at
once; its slot is refilled with the next prompt (prefilled and spliced into the cache,
right-aligned, with the columns before it masked out). Rows never decode past their
stop, and the batch stays full while work is queued.

Identical prompts (every Magpie instruction prompt is the same pre-query template) are
prefilled once per admission and their cache rows copied. Prompts that only start alike
(a tag mission's instructions and examples, a judge's rubric, a long system prompt) share
more: the prefix they all have is prefilled once, kept, and its keys and values copied
into every row's first columns, in `next_token_probs` and at admission (issue 26).

With `SamplingParams.json_schema` set (tagging), each row gets a grammar matcher when it
is admitted; the tokens the schema forbids are masked before sampling, the sampled token
is fed to the matcher, and the row stops when the grammar terminates (`magpie.grammar`).

Randomness is per row: each row (sample j of prompt i) owns a CPU `torch.Generator`
seeded `seeds[i] + j` and draws exactly one uniform number per decoding step, so its text
depends on its seed alone, not on which rows share its batch or call (`Engine.stream`).

Numerics are per row too (`batch_invariant`, on by default): the model runs the
batch-invariant attention and matrix products of `magpie.engines.invariant`, so a row's
logits are the same bits whatever else is in the batch, its place in it, its padding and
when it was admitted; the same seed then gives the same records at any batch size, after
a resume and on any replica. The dtype is bfloat16 where the machine computes it natively
and float32 elsewhere (`magpie.dtypes`, `--dtype auto`). A run whose kernels are not
invariant (`invariant.probe`) says so once.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from magpie import grammar
from magpie.dtypes import resolve_dtype
from magpie.engines import invariant
from magpie.engines.base import (
    Completion,
    Prompt,
    SamplingParams,
    collect,
    cut_at_stop,
    prompt_problem,
    rejected,
    resolve_seeds,
)
from magpie.engines.repetition import WINDOW, repeats
from magpie.logits import FLAMING_TOKENS_FACTOR, markdown_header_token_ids
from magpie.models import resolve_model
from magpie.prompt_text import encode

log = logging.getLogger("magpie")

# Stop strings are searched in the decoded tail of this many tokens (a stop string longer
# than this many tokens would be missed; real stop strings are 1-8 tokens).
STOP_WINDOW_TOKENS = 24
# Most padded tokens computed in one batch of `next_token_probs` (one forward pass), and
# most tokens whose keys and values the batch holds (the shared prefix's copies included).
PROBS_BATCH_TOKENS = 16384
PROBS_CACHE_TOKENS = 65536
# Prompts of one `next_token_probs` call sharing at least this many leading tokens
# prefill them once (`HFEngine._shared_prefix`); None switches the reuse off.
MIN_SHARED_PREFIX = 32
PREFIXES_KEPT = 4


@dataclass
class _Row:
    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    generated: list[int] = field(default_factory=list)
    pending: int | None = None  # sampled, not yet in the KV cache
    done: bool = False
    matcher: object | None = None  # grammar matcher under constrained decoding
    generator: torch.Generator | None = None  # this row's own random stream


@dataclass
class _Prefix:
    """A prefix's tokens and its keys and values per layer (keys, values, keys, ...),
    each [variants, kv_heads, P, head_dim]: variant e as a row whose length has the
    parity of P + e holds them (`HFEngine._shared_prefix`; one variant when the engine
    is not batch-invariant)."""

    tokens: tuple[int, ...]
    kv: list[torch.Tensor]

    def batch_cache(self, lengths: torch.Tensor, width: int, count: int):
        """A cache of the first `count` (<= P) columns of a left-padded batch of prompts
        that all start with this prefix: row r's column c holds prefix token c - (width -
        lengths[r]) (padding, masked, where negative), from the variant of its parity."""
        from transformers import DynamicCache

        pad = width - lengths
        token = (torch.arange(count, device=lengths.device)[None, :] - pad[:, None]).clamp(min=0)
        variant = ((lengths - len(self.tokens)) % self.kv[0].shape[0])[:, None]
        cache = DynamicCache()
        for layer in range(len(self.kv) // 2):
            keys, values = (
                t[variant, :, token].transpose(1, 2) for t in self.kv[2 * layer : 2 * layer + 2]
            )
            cache.update(keys.contiguous(), values.contiguous(), layer)
        return cache


class HFEngine:
    """Batched generation with transformers. See the module docstring."""

    name = "hf"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        device: str | None = None,
        batch_size: int = 64,
        seed: int | None = None,
        trust_remote_code: bool = False,
        batch_invariant: bool | None = None,
        model=None,
        tokenizer=None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = model_path
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        # Seeds of unseeded rows (calls without per-prompt seeds) come from here.
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else torch.seed() % (2**63))
        if model is None:
            local = resolve_model(model_path)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(
                local, trust_remote_code=trust_remote_code
            )
            model = AutoModelForCausalLM.from_pretrained(
                local,
                dtype=getattr(torch, resolve_dtype(dtype, self.device.type)),
                trust_remote_code=trust_remote_code,
            )
        self.model = model.to(self.device).eval()
        self.exact = self._batch_invariant(batch_invariant)
        # transformers renamed the KV-cache argument and output field `past_key_values`
        # to `cache` (5.2x warns on the old name); use whichever this version has.
        forward = inspect.signature(self.model.forward).parameters
        self._cache_key = "cache" if "cache" in forward else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in forward  # last position's logits only
        self.tokenizer = tokenizer
        self.pad_id = (
            tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else (tokenizer.eos_token_id or 0)
        )
        self.max_positions = getattr(model.config, "max_position_embeddings", None) or 1_000_000
        self._special = [t for t in tokenizer.all_special_tokens if t]
        self._grammar = None
        self.supports_json_schema = grammar.available()
        self.min_shared_prefix = MIN_SHARED_PREFIX
        if self.exact and not invariant.prefix_reuse_is_exact(next(self.model.parameters()).dtype):
            self.min_shared_prefix = None  # exact first (`invariant.prefix_reuse_is_exact`)
        self._prefixes: list[_Prefix] = []  # most recently used first

    # ----------------------------------------------------------------- public API
    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        return collect(self.stream(prompts, params, seeds), len(prompts))

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt. Text is already templated: no special tokens are added."""
        if isinstance(prompt, str):
            return encode(self.tokenizer, prompt)  # record text is text (prompt_text)
        return list(prompt)

    @torch.inference_mode()
    def stream(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> Iterator[tuple[int, list[Completion]]]:
        """Yield `(prompt_index, n completions)` as prompts finish (see `Engine.stream`)."""
        encoded = [self.encode(p) for p in prompts]
        base = resolve_seeds(len(prompts), params, seeds)
        problems = [prompt_problem(ids, self.max_positions) for ids in encoded]
        for pi, problem in enumerate(problems):  # not generated from: answered at once
            if problem is not None:
                yield pi, [rejected(problem, len(encoded[pi]))] * params.n
        queue = deque(
            _Row(pi, si, ids, generator=self._row_generator(base, pi, si, params))
            for pi, ids in enumerate(encoded)
            if problems[pi] is None
            for si in range(params.n)
        )
        results: dict[int, list[Completion | None]] = {}
        banned = (
            torch.tensor(markdown_header_token_ids(self.tokenizer), device=self.device)
            if params.logits_processor == "de_markdown"
            else None
        )
        stop_ids = set(params.stop_token_ids)
        schema_grammar = self._schema_grammar(params)
        rows: list[_Row] = []
        cache = None
        mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)

        while queue or rows:
            free = self.batch_size - len(rows)
            # Admit new prompts when enough slots are free (or nothing is running).
            if queue and (not rows or free >= max(1, self.batch_size // 8)):
                new = [queue.popleft() for _ in range(min(free, len(queue)))]
                if schema_grammar is not None:
                    for r in new:
                        r.matcher = schema_grammar.matcher(params.json_schema, stop_ids)
                cache, mask, logits = self._admit(rows, new, cache, mask)
                rows.extend(new)
                self._sample_into(new, logits, params, banned, True, schema_grammar)
            else:
                # One decode step for every row: feed each row's pending token.
                tokens = torch.tensor([[r.pending] for r in rows], device=self.device)
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                positions = (mask.sum(dim=1, keepdim=True) - 1).clamp(min=0)
                out = self.model(
                    input_ids=tokens,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=True,
                    **{self._cache_key: cache},
                )
                cache = getattr(out, self._cache_key)
                for r in rows:
                    r.generated.append(r.pending)
                    r.pending = None
                logits = out.logits[:, -1, :]
                self._sample_into(rows, logits, params, banned, False, schema_grammar)

            # Finish rows that stopped; yield prompts whose n samples are all done.
            keep = []
            for i, r in enumerate(rows):
                completion = self._check_done(r, params, stop_ids)
                if completion is None:
                    keep.append(i)
                    continue
                slot = results.setdefault(r.prompt_index, [None] * params.n)
                slot[r.sample_index] = completion
                if all(c is not None for c in slot):
                    yield r.prompt_index, results.pop(r.prompt_index)  # type: ignore[misc]
            if len(keep) < len(rows):
                rows = [rows[i] for i in keep]
                if rows:
                    cache, mask = self._select_rows(cache, mask, keep)
                else:
                    cache, mask = None, mask[:0, :0]

    @torch.inference_mode()
    def next_token_probs(
        self, prompts: Sequence[Prompt], token_ids: Sequence[int]
    ) -> list[list[float]]:
        """The probability of each of `token_ids` as the next token after each prompt
        (softmax over the whole vocabulary, not renormalised), in prompt order.

        One forward pass per batch, no decoding: prompts are sorted by length and
        left-padded into batches of at most `batch_size` rows and PROBS_BATCH_TOKENS
        computed tokens, with each row's positions counted from its first real token (as
        if it were alone), and only the last position's logits are computed. The prefix
        all prompts share (a tag mission's instructions and examples, a judge's rubric)
        is prefilled once and its keys and values reused by every row (`_shared_prefix`):
        the same logits, bit for bit under `batch_invariant`. A prompt that cannot be
        read (empty, or no room in the context: `prompt_problem`) gets NaNs.
        """
        ids = torch.tensor(list(token_ids), dtype=torch.long, device=self.device)
        encoded = [self.encode(p) for p in prompts]
        out: list[list[float]] = [[math.nan] * len(ids) for _ in encoded]
        good = [i for i, e in enumerate(encoded) if prompt_problem(e, self.max_positions) is None]
        prefix = self._shared_prefix([encoded[i] for i in good])  # each batch reuses it
        shared = 0 if prefix is None else len(prefix.tokens)
        if shared and self.exact:  # (a batch may take more: `_prefill`)
            shared = invariant.prefix_columns([len(encoded[i]) for i in good], shared)
        for batch in _length_batches(good, encoded, self.batch_size, PROBS_BATCH_TOKENS, shared):
            logits, _, _ = self._prefill([encoded[i] for i in batch], keep_cache=False)
            probs = logits.float().log_softmax(dim=-1).index_select(1, ids).exp()
            for r, i in enumerate(batch):
                out[i] = probs[r].tolist()
        return out

    def _prefill(self, prompts: list[list[int]], keep_cache: bool):
        """One forward pass over `prompts` left-padded into a batch, each row's positions
        counted from its first real token, the last position's logits only. The prefix
        all rows share (`_shared_prefix`) is not computed again: each row's first P
        columns (its padding, then the prefix's first tokens) are copied from its cache,
        where a full pass would have put them, with the same bits under
        `batch_invariant`. Returns (logits [B, vocab], the batch's cache if `keep_cache`
        else None, attention mask [B, width])."""
        width = max(len(p) for p in prompts)
        rows = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            rows[r, width - len(p) :] = torch.tensor(p)
            mask[r, width - len(p) :] = 1
        rows, mask = rows.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        kwargs = {"logits_to_keep": 1} if self._logits_to_keep else {}
        prefix = self._shared_prefix(prompts)
        start, cache = 0, None
        if prefix is not None:
            start = len(prefix.tokens)
            if self.exact:  # rows past KEY_BLOCK keys take the prefix up to a block's edge
                start = invariant.prefix_columns([len(p) for p in prompts], start)
        if start:
            lengths = torch.tensor([len(p) for p in prompts], device=self.device)
            cache = prefix.batch_cache(lengths, width, start)
        if keep_cache or cache is not None:
            kwargs.update({self._cache_key: cache, "use_cache": True})
        else:
            kwargs["use_cache"] = False
        out = self.model(
            input_ids=rows[:, start:],
            attention_mask=mask,
            position_ids=positions[:, start:],
            **kwargs,
        )
        return out.logits[:, -1, :], getattr(out, self._cache_key) if keep_cache else None, mask

    def _shared_prefix(self, prompts: list[list[int]]) -> _Prefix | None:
        """The longest prefix every prompt shares, short of each prompt's last token,
        prefilled (`_Prefix`); None when it is shorter than `min_shared_prefix` tokens.
        The last PREFIXES_KEPT computed are kept: one is reused while it is a prefix of
        every prompt (the next call of the same mission, the next admission)."""
        if not prompts or self.min_shared_prefix is None:
            return None
        shared = os.path.commonprefix(prompts)[: min(len(p) for p in prompts) - 1]
        if self.exact:  # computed alone in one block of keys (`invariant.KEY_BLOCK`)
            shared = shared[: invariant.KEY_BLOCK - 1]
        if len(shared) < self.min_shared_prefix:
            return None
        for kept in self._prefixes:  # (a lone prompt is prefilled whole unless kept)
            if len(kept.tokens) <= len(shared) and tuple(shared[: len(kept.tokens)]) == kept.tokens:
                self._prefixes.remove(kept)
                self._prefixes.insert(0, kept)
                return kept
        if len(prompts) == 1:
            return None
        # Batch-invariant attention sums a row's keys in pairs counted from its end: the
        # prefix's keys and values are computed twice, as rows of even and odd length
        # hold them (a masked column after the prefix), so every row gets its own bits.
        variants = []
        for extra in (0, 1) if self.exact else (0,):
            ids = torch.tensor([[*shared, *[self.pad_id] * extra]], device=self.device)
            mask = torch.ones_like(ids)
            mask[0, len(shared) :] = 0
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=torch.arange(ids.shape[1], device=self.device)[None, :],
                use_cache=True,
            )
            variants.append(
                [
                    t[:, :, : len(shared)]
                    for layer in getattr(out, self._cache_key).layers
                    for t in (layer.keys, layer.values)
                ]
            )
        kv = [torch.cat(ts, dim=0) for ts in zip(*variants, strict=True)]
        self._prefixes = [_Prefix(tuple(shared), kv), *self._prefixes[: PREFIXES_KEPT - 1]]
        return self._prefixes[0]

    # ----------------------------------------------------------------- internals
    def _batch_invariant(self, wanted: bool | None) -> bool:
        """Switch the model to the batch-invariant attention and products unless asked not to;
        True when this engine's records do not depend on batch composition (measured:
        `invariant.probe`). A run that is not exact says so once in the log."""
        dtype = next(self.model.parameters()).dtype
        reason = None
        if wanted is False:
            reason = "--batch_invariant False"
        else:
            reason = invariant.probe(dtype, self.device.type)
            if reason is None and not invariant.use(self.model):
                reason = "the model's code does not take transformers' attention interface"
        if reason is not None:
            # float32 is exact in the records measured (README): noted, not warned.
            quiet = dtype == torch.float32 and wanted is not False
            _note_not_exact(str(dtype).removeprefix("torch."), self.device.type, reason, quiet)
        return reason is None

    def _row_generator(self, base, prompt_index: int, sample_index: int, params):
        """Sample j of prompt i draws from seed base[i] + j (a fresh seed when unseeded)."""
        if params.temperature <= 0:
            return None  # greedy: nothing is drawn
        if base is None:
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        else:
            seed = base[prompt_index] + sample_index
        return torch.Generator().manual_seed(seed)

    def _admit(self, rows, new, cache, mask):
        """Prefill `new` rows (unique prompts once, their shared prefix from its cache:
        `_prefill`) and splice them into the batch cache."""
        unique: dict[tuple[int, ...], int] = {}
        for r in new:
            unique.setdefault(tuple(r.prompt_ids), len(unique))
        logits, new_cache, pmask = self._prefill([list(p) for p in unique], keep_cache=True)
        expand = torch.tensor([unique[tuple(r.prompt_ids)] for r in new], device=self.device)
        new_layers = [
            (layer.keys.index_select(0, expand), layer.values.index_select(0, expand))
            for layer in new_cache.layers
        ]
        new_mask = pmask.index_select(0, expand)
        logits_new = logits.index_select(0, expand)
        if cache is None or not rows:
            cache = new_cache
            for layer, (k, v) in zip(cache.layers, new_layers, strict=True):
                layer.keys, layer.values = k, v
            return cache, new_mask, logits_new
        # Right-align old and new rows to a common width, then stack them.
        old_w, new_w = mask.shape[1], new_mask.shape[1]
        total = max(old_w, new_w)
        for layer, (k, v) in zip(cache.layers, new_layers, strict=True):
            layer.keys = torch.cat([_left_pad(layer.keys, total), _left_pad(k, total)], dim=0)
            layer.values = torch.cat([_left_pad(layer.values, total), _left_pad(v, total)], dim=0)
        mask = torch.cat([_left_pad_mask(mask, total), _left_pad_mask(new_mask, total)], dim=0)
        return cache, mask, logits_new

    def _select_rows(self, cache, mask, keep: list[int]):
        """Drop finished rows from the cache, and columns no remaining row attends to."""
        index = torch.tensor(keep, device=self.device)
        mask = mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else mask.shape[1]
        mask = mask[:, start:]
        for layer in cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:, :]
            layer.values = layer.values.index_select(0, index)[:, :, start:, :]
        return cache, mask

    def _schema_grammar(self, params: SamplingParams):
        """The grammar compiler for constrained decoding, or None (no schema, no xgrammar)."""
        if params.json_schema is None:
            return None
        if not self.supports_json_schema:
            log.warning("json_schema ignored: constrained decoding needs xgrammar")
            return None
        if self._grammar is None:
            vocab_size = self.model.get_output_embeddings().weight.shape[0]
            self._grammar = grammar.JsonSchemaGrammar(self.tokenizer, vocab_size)
        return self._grammar

    def _sample_into(self, rows, logits, params, banned, first_token: bool, schema_grammar=None):
        """Sample each row's next (pending) token from its logits row."""
        logits = logits.float()
        if params.repetition_penalty != 1.0:
            logits = _repetition_penalty(logits, rows, params.repetition_penalty, self.device)
        if params.frequency_penalty or params.presence_penalty:
            logits = _output_penalties(logits, rows, params, self.device)
        if first_token and banned is not None:
            logits[:, banned] = float("-inf")
        if first_token and params.logits_processor == "flaming_tokens":
            logits = logits / FLAMING_TOKENS_FACTOR
        if schema_grammar is not None:
            schema_grammar.mask_logits(logits, [r.matcher for r in rows])
        uniform = None
        if params.temperature > 0:
            # One draw per row and step from the row's own generator, used or not.
            draws = [torch.rand((), generator=r.generator) for r in rows]
            uniform = torch.stack(draws).unsqueeze(1).to(logits.device)
        tokens = _sample(logits, params.temperature, params.top_p, uniform)
        for r, t in zip(rows, tokens.tolist(), strict=True):
            r.pending = t
            if r.matcher is not None:
                r.matcher.accept_token(t)

    def _check_done(self, r: _Row, params: SamplingParams, stop_ids: set[int]) -> Completion | None:
        """A Completion if the row stopped after its pending token, else None."""
        token = r.pending
        if token is None:
            return None
        if token in stop_ids or (r.matcher is not None and r.matcher.is_terminated()):
            return self._finish(r, "stop", token)
        tail = r.generated[-STOP_WINDOW_TOKENS:] + [token]
        if params.stop:
            text = self.tokenizer.decode(tail, skip_special_tokens=False)
            if any(s and s in text for s in params.stop):
                r.generated.append(token)
                return self._finish(r, "stop", None, params.stop)
        if params.stop_repetition and r.matcher is None and repeats(tail_of(r.generated, token)):
            r.generated.append(token)  # looping (magpie.engines.repetition): stop now
            return self._finish(r, "repetitive", None, params.stop)
        limit = min(params.max_tokens, self.max_positions - len(r.prompt_ids))
        if len(r.generated) + 1 >= limit:
            r.generated.append(token)
            return self._finish(r, "length", None, params.stop)
        return None

    def _finish(self, r: _Row, reason, stop_id, stops=()) -> Completion:
        text = self.tokenizer.decode(r.generated, skip_special_tokens=False)
        text, which = cut_at_stop(text, stops)
        for special in self._special:
            text = text.replace(special, "")
        r.done = True
        if reason == "length" and which is not None:
            reason = "stop"
        return Completion(
            text=text,
            finish_reason=reason,
            stop_reason=stop_id if stop_id is not None else which,
            prompt_tokens=len(r.prompt_ids),
            completion_tokens=len(r.generated) + (1 if stop_id is not None else 0),
        )


_NOTED: set[tuple[str, str, str]] = set()


def _note_not_exact(dtype: str, device: str, reason: str, quiet: bool = False) -> None:
    """Say once per process that this engine's records may depend on batch composition."""
    if (dtype, device, reason) in _NOTED:
        return
    _NOTED.add((dtype, device, reason))
    (log.info if quiet else log.warning)(
        "hf engine, %s on %s: not batch-invariant (%s): a record's text may depend on the "
        "batch size, a resume or the replica that made it; bfloat16 with --batch_invariant "
        "(the default) is exact on CPUs where the kernels allow it",
        dtype,
        device,
        reason,
    )


def _length_batches(
    indices: list[int], encoded: list[list[int]], rows: int, max_tokens: int, shared: int = 0
) -> Iterator[list[int]]:
    """`indices`, longest prompt first, in batches of at most `rows` rows, `max_tokens`
    padded tokens computed (the first `shared` of each row are not: a reused prefix) and
    PROBS_CACHE_TOKENS held (a prompt longer than that is a batch of its own)."""
    batch: list[int] = []
    for i in sorted(indices, key=lambda i: -len(encoded[i])):
        width = len(encoded[batch[0]]) if batch else len(encoded[i])
        n = len(batch) + 1
        full = n * (width - shared) > max_tokens or n * width > PROBS_CACHE_TOKENS
        if batch and (len(batch) >= rows or full):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def tail_of(generated: list[int], token: int) -> list[int]:
    """The last tokens of a row with its pending token: what the repetition check reads."""
    return generated[-(WINDOW - 1) :] + [token]


def _left_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Pad a [B, H, L, D] cache tensor with zeros on the left of L up to `width`."""
    missing = width - t.shape[2]
    if missing <= 0:
        return t
    pad = torch.zeros((*t.shape[:2], missing, t.shape[3]), dtype=t.dtype, device=t.device)
    return torch.cat([pad, t], dim=2)


def _left_pad_mask(m: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - m.shape[1]
    if missing <= 0:
        return m
    return torch.cat([torch.zeros((m.shape[0], missing), dtype=m.dtype, device=m.device), m], 1)


def _repetition_penalty(logits, rows, penalty: float, device) -> torch.Tensor:
    """CTRL-style penalty on tokens already in each row's prompt or output."""
    for i, r in enumerate(rows):
        seen = torch.tensor(sorted(set(r.prompt_ids + r.generated)), device=device)
        values = logits[i, seen]
        logits[i, seen] = torch.where(values > 0, values / penalty, values * penalty)
    return logits


def _output_penalties(logits, rows, params: SamplingParams, device) -> torch.Tensor:
    """OpenAI's frequency and presence penalties (as vLLM applies them): subtracted from
    the logits of tokens already in each row's OUTPUT (never its prompt, so the
    end-of-turn token the template put there stays as likely as ever)."""
    for i, r in enumerate(rows):
        if not r.generated:
            continue
        ids, counts = torch.tensor(r.generated, device=device).unique(return_counts=True)
        logits[i, ids] -= params.frequency_penalty * counts + params.presence_penalty
    return logits


# Nucleus sampling looks at this many top candidates first; a row whose candidates do
# not reach top_p falls back to the full sort (exact either way, much cheaper usually).
TOP_P_CANDIDATES = 1024


def _sample(
    logits: torch.Tensor, temperature: float, top_p: float, uniform: torch.Tensor | None
) -> torch.Tensor:
    """Greedy at temperature 0, else temperature + nucleus sampling.

    `logits` [B, V]; `uniform` [B, 1] holds one number in [0, 1) per row (its own draw).
    Draws by inverse CDF (cumsum + searchsorted): exact, and ~40x cheaper on CPU than
    torch.multinomial over a 49k vocabulary, which cost as much as the forward pass.
    The nucleus is cut on the TRUE probabilities (normalised over the whole vocabulary),
    so looking at the top candidates first never shrinks it.
    """
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    log_z = logits.logsumexp(dim=-1, keepdim=True)
    if top_p >= 1.0:
        return _draw(torch.exp(logits - log_z), uniform)
    k = min(TOP_P_CANDIDATES, logits.shape[-1])
    values, index = logits.topk(k, dim=-1)  # sorted, largest first
    probs = torch.exp(values - log_z)
    short = probs.sum(dim=-1) < top_p
    if not short.any():
        return _nucleus(probs, index, top_p, uniform)
    # Rare: a flat distribution needs more than k candidates: sort those rows fully.
    out = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    rows = short.nonzero().squeeze(1)
    full_values, full_index = logits[rows].sort(dim=-1, descending=True)
    full_probs = torch.exp(full_values - log_z[rows])
    out[rows] = _nucleus(full_probs, full_index, top_p, uniform[rows])
    keep = (~short).nonzero().squeeze(1)
    if len(keep):
        out[keep] = _nucleus(probs[keep], index[keep], top_p, uniform[keep])
    return out


def _nucleus(probs, index, top_p: float, uniform) -> torch.Tensor:
    """Sample among the smallest prefix of the sorted candidates whose true mass reaches
    top_p (`probs` sorted, largest first, normalised over the whole vocabulary)."""
    drop = probs.cumsum(dim=-1) - probs >= top_p
    probs = probs.masked_fill(drop, 0.0)
    return index.gather(1, _draw(probs, uniform).unsqueeze(1)).squeeze(1)


def _draw(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One index per row, drawn with probability proportional to `probs` (inverse CDF)."""
    cdf = probs.cumsum(dim=-1)
    target = uniform.to(cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=probs.shape[-1] - 1)
