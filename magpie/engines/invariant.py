"""Batch-invariant attention for the hf engine: a row's logits depend on its own tokens only.

Why: in bfloat16, transformers' default attention on CPU (torch's fused SDPA kernel)
splits the keys into blocks whose boundaries move with the batch's padding, so a row's
attention sums, and then its logits, change with which other rows share its call, how
its padding falls and when it was admitted. Near-tied tokens flip and texts diverge
(issue 23). Same idea as vLLM's batch-invariant mode and SGLang's deterministic
inference (after Thinking Machines, "Defeating Nondeterminism in LLM Inference", 2025):
every reduction a row goes through has an order that does not depend on the batch.

`invariant_attention` is eager attention with that property, registered with
transformers' `AttentionInterface` (no monkeypatching) under `ATTN_IMPLEMENTATION`:

- scores `q @ k^T` and the output `p @ v` are bf16 matrix products whose reduction (over
  head_dim, over keys) runs in a fixed order per row here: measured invariant to the
  number of rows, the number of keys and to masked keys before a row's first real key
  (`probe` checks this on the machine at hand);
- the softmax's denominator is a sequential sum over keys (`cumsum`, whose CPU kernel
  adds in order, in double): a masked key adds an exact 0, so left padding never changes
  a row's sum; max and exp are elementwise or order-free;
- grouped-query heads are folded into the rows of one product (no `repeat_kv` copy).

Small matrix products: a product gives a row the same bits at any number of rows from
some count up, but fewer rows take other kernels that sum in another order. Measured: bf16
on oneDNN with AVX512-BF16, from 2 rows (a single row takes a matrix-vector kernel: 1
output in ~6,000 differs); float32 on MKL with AVX2 only (AMD EPYC), from 12 rows and 12
columns (fewer, except multiples of 4, take other kernels). So every product here has at
least MIN_ROWS rows and columns: `use` hooks every linear layer to pad a smaller input with
zero rows, and the attention pads its two products the same way. Norms reduce per row;
rotary embeddings are elementwise. `probe()` measures all of this at engine start, so a
machine where it does not hold is told once in the log that its records are not exact.
"""

from __future__ import annotations

import functools
import logging

import torch

log = logging.getLogger("magpie")

ATTN_IMPLEMENTATION = "magpie_batch_invariant"
# Rows (and columns) below which a matrix product is padded: see the module docstring.
MIN_ROWS = 16
# Score elements computed at once (rows of the batch are taken in chunks above this).
CHUNK_ELEMENTS = 1 << 23


def invariant_attention(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
):
    """Attention as transformers calls it: query [B, H, Lq, D], key/value [B, Hkv, Lk, D],
    attention_mask bool [B, 1, Lq, Lk] (True: attend) or None; returns ([B, Lq, H, D], None)."""
    b, h, lq, d = query.shape
    hkv, lk = key.shape[1], key.shape[2]
    scale = scaling if scaling is not None else d**-0.5
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        attention_mask = attention_mask >= 0  # an additive float mask: 0 where attended
    per_row = h * lq * lk
    step = max(1, CHUNK_ELEMENTS // max(1, per_row))
    parts = []
    for start in range(0, b, step):
        stop = min(b, start + step)
        mask = None if attention_mask is None else attention_mask[start:stop]
        parts.append(
            _attend(query[start:stop], key[start:stop], value[start:stop], mask, scale, hkv)
        )
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
    return out, None


def _attend(query, key, value, mask, scale: float, hkv: int) -> torch.Tensor:
    b, h, lq, d = query.shape
    lk = key.shape[2]
    groups = h // hkv
    # [B, Hkv, groups * Lq, D]: the query heads sharing a key head are rows of one product.
    q = query.reshape(b, hkv, groups * lq, d)
    scores = padded_matmul(q, key.transpose(2, 3)).float().mul_(scale)
    scores = scores.view(b, hkv, groups, lq, lk)
    if mask is None and lq > 1:  # causal, no padding (a mask function that skipped it)
        keys = torch.arange(lk, device=query.device)
        queries = torch.arange(lq, device=query.device) + (lk - lq)
        mask = (keys[None, :] <= queries[:, None])[None, None]
    if mask is not None:
        allowed = mask[:, :, :lq, :lk].unsqueeze(2)  # [B, 1, 1, Lq, Lk]
        scores = scores.masked_fill(~allowed, float("-inf"))
    top = scores.amax(dim=-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # fully masked rows
    weights = torch.exp(scores - top)
    # Sequential sum over keys: masked keys add exact zeros wherever they fall.
    total = weights.cumsum(dim=-1)[..., -1:]
    total = torch.where(total > 0, total, torch.ones_like(total))
    probs = (weights / total).to(value.dtype).view(b, hkv, groups * lq, lk)
    out = probs_times_values(probs, value)  # [B, Hkv, groups * Lq, D]
    return out.view(b, h, lq, d).transpose(1, 2).contiguous()


# Keys one matrix product sums in `probs_times_values`. Above about 570 keys the bf16
# kernel (oneDNN) blocks its sum in places that move with the width (measured: a row's
# result changed with the padding before it), so longer rows are cut into blocks of this
# many keys counted from the newest key, and the blocks' products added in order.
KEY_BLOCK = 512


# float32 (MKL): a product's sum over keys is split at places that move with the number of
# keys (measured: 61 leading masked keys changed a row), so every product there takes
# blocks of exactly this many keys, counted from the newest key.
FIXED_KEY_BLOCK = 128


def probs_times_values(probs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """`probs @ values` ([..., M, K] @ [..., K, D]) with a row's sums independent of the
    padding before it. bf16, up to KEY_BLOCK keys: one product over an even number of keys
    (the bf16 kernel adds products in pairs of adjacent keys counted from the first column;
    with an even width they are counted from the last, newest key), an odd width getting
    one masked key in front. Beyond: blocks of KEY_BLOCK keys counted from the newest,
    each one such product, summed newest first in float32 (blocks of padding add exact
    zeros). Other dtypes: always blocks of FIXED_KEY_BLOCK keys, so every product has
    one shape."""
    width = probs.shape[-1]
    if probs.dtype != torch.bfloat16:
        return _in_key_blocks(probs, values, FIXED_KEY_BLOCK)
    if width <= KEY_BLOCK:
        if width % 2:
            probs = torch.nn.functional.pad(probs, (1, 0))
            values = torch.nn.functional.pad(values, (0, 0, 1, 0))
        return padded_matmul(probs, values)
    return _in_key_blocks(probs, values, KEY_BLOCK)


def _in_key_blocks(probs: torch.Tensor, values: torch.Tensor, size: int) -> torch.Tensor:
    """`probs @ values` as blocks of `size` keys counted from the newest (padding in
    front), their products summed newest first in float32."""
    width = probs.shape[-1]
    blocks = -(-width // size)
    missing = blocks * size - width
    probs = torch.nn.functional.pad(probs, (missing, 0))
    values = torch.nn.functional.pad(values, (0, 0, missing, 0))
    parts = padded_matmul(
        probs.unflatten(-1, (blocks, size)).movedim(-2, -3),  # [..., blocks, M, size]
        values.unflatten(-2, (blocks, size)),  # [..., blocks, size, D]
    )
    total = parts.select(-3, blocks - 1).to(torch.float32, copy=True)
    for block in range(blocks - 2, -1, -1):
        total += parts.select(-3, block).float()
    return total.to(probs.dtype)


def padded_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`a @ b` ([..., M, K] @ [..., K, N]) computed with at least MIN_ROWS rows and columns
    (zeros added, then cut off), so that small products take the kernel larger ones do."""
    rows, cols = a.shape[-2], b.shape[-1]
    if rows < MIN_ROWS:
        a = torch.nn.functional.pad(a, (0, 0, 0, MIN_ROWS - rows))
    if cols < MIN_ROWS:
        b = torch.nn.functional.pad(b, (0, MIN_ROWS - cols))
    out = torch.matmul(a, b)
    if rows < MIN_ROWS or cols < MIN_ROWS:
        out = out[..., :rows, :cols].contiguous()
    return out


def prefix_reuse_is_exact(dtype: torch.dtype) -> bool:
    """Whether a shared prefix computed alone gives the full pass's bits (`HFEngine`): with
    oneDNN's native bf16 kernel (AVX512-BF16, AMX) a row's sums depend on its keys' parity
    only, and two variants of the prefix cover it (measured). Elsewhere (fixed key blocks;
    torch's fallback bf16 kernel on AVX2, measured to differ) a prefix query's keys sit at
    other places than in the full pass, so an exact engine does not reuse the prefix."""
    from magpie.dtypes import native_bf16

    return dtype == torch.bfloat16 and native_bf16("cpu")


def prefix_columns(lengths: list[int], count: int) -> int:
    """How many of a shared prefix's `count` tokens rows of these lengths can take from
    a prefix computed alone (`HFEngine._shared_prefix`, at most KEY_BLOCK - 1 tokens) and
    still get a full pass's bits: a row longer than KEY_BLOCK has block boundaries at
    len - k * KEY_BLOCK, and a prefix query whose keys straddle one was summed otherwise
    alone. So the prefix is cut at the first boundary inside it."""
    for n in lengths:
        if n > KEY_BLOCK and n % KEY_BLOCK:
            count = min(count, n % KEY_BLOCK)
    return count


@functools.cache
def register() -> str:
    """Register the attention and its mask (a boolean mask, always materialised) with
    transformers; returns the implementation's name for `attn_implementation=`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_IMPLEMENTATION, invariant_attention)

    def boolean_mask(*args, **kwargs):
        kwargs["allow_is_causal_skip"] = False  # always a mask: the attention needs one
        kwargs["allow_is_bidirectional_skip"] = False
        return sdpa_mask(*args, **kwargs)

    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, boolean_mask)
    return ATTN_IMPLEMENTATION


def use(model) -> bool:
    """Switch `model` to the batch-invariant attention and linear layers; False if the
    model cannot take it (its code does not dispatch through transformers' attention
    interface)."""
    name = register()
    try:
        model.set_attn_implementation(name)
    except (ValueError, TypeError, AttributeError, NotImplementedError) as exc:
        log.debug("batch-invariant attention refused by the model: %s", exc)
        return False
    if getattr(model.config, "_attn_implementation", None) != name:
        return False
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not hasattr(module, "_magpie_rows"):
            module._magpie_rows = None
            module.register_forward_pre_hook(_pad_rows)
            module.register_forward_hook(_unpad_rows)
    return True


def _pad_rows(module, args):
    """A linear layer's input of fewer than MIN_ROWS rows gets zero rows added: see the
    module docstring (small products take kernels that sum in another order)."""
    if not args:  # called with keywords only: left as it is
        module._magpie_rows = None
        return None
    x = args[0]
    rows = x.numel() // max(1, x.shape[-1])
    if x.dim() < 2 or rows >= MIN_ROWS:
        module._magpie_rows = None
        return None
    module._magpie_rows = x.shape
    flat = x.reshape(rows, x.shape[-1])
    return (torch.nn.functional.pad(flat, (0, 0, 0, MIN_ROWS - rows)), *args[1:])


def _unpad_rows(module, args, output):
    shape = module._magpie_rows
    if shape is None:
        return None
    module._magpie_rows = None
    rows = output.shape[0] - (MIN_ROWS - shape[:-1].numel())
    return output[:rows].reshape(*shape[:-1], output.shape[-1])


@functools.cache
def probe(dtype: torch.dtype, device: str) -> str | None:
    """None when this machine's kernels are batch-invariant in `dtype` (what the attention
    above relies on), else the reason: a row's result checked bit for bit at different
    row counts, key counts and leading masked keys."""
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(dtype=dtype, device=device)

    if torch.device(device).type != "cpu":
        return f"batch invariance is measured on CPU only (not on {device})"
    weight = rand(1024, 512) * 0.05
    x = rand(130, 512)
    every = torch.nn.functional.linear(x, weight)
    for rows in (1, 2, 3, 5, 8, 11, 17, 64, 65):  # fewer than MIN_ROWS are padded (`use`)
        padded = torch.nn.functional.pad(x[:rows], (0, 0, 0, max(0, MIN_ROWS - rows)))
        if not torch.equal(torch.nn.functional.linear(padded, weight)[:rows], every[:rows]):
            return f"{dtype} matrix products change with the number of rows ({rows})"
    q, k = rand(3, 7, 64), rand(3, 64, 300)  # attention scores: few rows, any columns
    scores = padded_matmul(q, k)
    for cols in (1, 5, 13, 64, 299):
        if not torch.equal(padded_matmul(q, k[..., :cols]), scores[..., :cols]):
            return f"{dtype} matrix products change with the number of columns ({cols})"
    if not torch.equal(padded_matmul(q[:1], k[:1]), scores[:1]):
        return f"{dtype} batched matrix products change with the batch"
    for rows, keys in ((40, 51), (48, 120), (600, 517), (6, 1100)):
        # Attention-like rows: softmax over keys of scores spread over a wide range.
        scores = torch.randn(rows, keys, generator=gen) * 6
        probs = torch.softmax(scores, dim=-1).to(dtype=dtype, device=device)
        values = rand(keys, 64)
        ref = probs_times_values(probs, values)
        for pad in (1, 2, 3, 16, 61, 77, 113, 600):
            p = torch.cat([torch.zeros(rows, pad, dtype=dtype, device=device), probs], dim=1)
            v = torch.cat([rand(pad, 64), values], dim=0)
            if not torch.equal(probs_times_values(p, v), ref):
                return f"{dtype} matrix products change with masked keys before a row ({pad})"
            more = torch.cat([p, torch.softmax(torch.randn(37, p.shape[1], generator=gen), -1)])
            if not torch.equal(probs_times_values(more.to(dtype), v)[:rows], ref):
                return f"{dtype} matrix products change with other rows ({pad} masked keys)"
    return None
