"""The near-duplicate stage (the original's gen_dis.py): read ids and texts, embed the
unique texts (a Step on the executor: here, or spread over Ray replicas), search on this
node, write every record with its fields (see magpie.dedup)."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from magpie import embeddings
from magpie.dedup.records import (
    annotate,
    distance_file_name,
    read_ids_and_texts,
    write_annotated,
)
from magpie.dedup.search import DEFAULT_THRESHOLD, finite_rows, load_index, save_index
from magpie.embeddings import _EMBEDDED_NAMES, DEFAULT_SENTENCE_MODEL, pick_device, resolve_dtype
from magpie.executor import LocalExecutor
from magpie.records import InputError
from magpie.stage import Summary

log = logging.getLogger("magpie")

# all-MiniLM-L6-v2's default, calibrated on 44 same-request and 52 different-request
# pairs (tests/fixtures/dedup/threshold_pairs.jsonl): it catches 39/44 same-request
# pairs (0.05 catches 34/44) and merges only the one different-request pair no threshold
# separates (Fahrenheit/Celsius swapped, 0.017); the next different-request pair lies
# at 0.109.
MINILM_THRESHOLD = 0.1


def default_threshold(sentence_model: str | None) -> tuple[float, str]:
    """The distance threshold for a sentence model when none is given, and why."""

    if (sentence_model or "") in _EMBEDDED_NAMES:
        return MINILM_THRESHOLD, "calibrated for all-MiniLM-L6-v2"
    if str(sentence_model).rstrip("/").endswith("all-mpnet-base-v2"):
        return DEFAULT_THRESHOLD, "the original's, set for all-mpnet-base-v2"
    return (
        DEFAULT_THRESHOLD,
        "the original's value for all-mpnet-base-v2, not calibrated for this model",
    )


def _texts_digest(texts: list[str]) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def embed_unique(
    texts: list[str],
    sentence_model: str = "",
    device: str | int | None = None,
    dtype: str = "float32",
    batch_size: int | None = None,
    executor=None,
    timings: dict | None = None,
) -> np.ndarray:
    """Unit float32 embeddings of `texts` (unique, non-empty) as an EmbedStep on
    `executor` (default: here); the model is released afterwards (Ray replicas stopped).
    `dtype` is already resolved (resolve_dtype): replicas use the driver's choice. Fills
    `timings` with model_load_s (local only: replicas load while they embed) and embed_s.
    """

    name = sentence_model or None
    load = functools.partial(embeddings.load_sentence_model, name, device, dtype)
    step = embeddings.EmbedStep(
        texts,
        batch_size or embeddings.default_batch_size(pick_device(device)),
        embeddings.sentence_max_tokens(name),
        float32_model=functools.partial(embeddings.load_sentence_model, name, device, "float32"),
    )
    timings = {} if timings is None else timings
    executor = executor or LocalExecutor()
    try:
        if isinstance(executor, LocalExecutor):
            t0 = time.time()
            executor.model(load)
            timings["model_load_s"] = time.time() - t0
        t0 = time.time()
        executor.run(step, load)
        timings["embed_s"] = time.time() - t0
    finally:
        executor.release(load)
    return step.vectors


def run_distance(
    input_file: str | os.PathLike,
    output_file: str | os.PathLike | None = None,
    sentence_model: str = "",
    threshold: float | None = None,
    text_field: str = "instruction",
    id_field: str | None = None,
    method: str = "auto",
    index_type: str = "ivf",
    search_space_size: int = 16,
    nprobe: int = 16,
    exact_max_rows: int | None = None,
    batch_size: int | None = None,
    device: str | int | None = None,
    dtype: str = "auto",
    save_faiss_index: bool = False,
    faiss_index: str | os.PathLike | None = None,
    progress: bool = True,
    executor=None,
) -> dict:
    """Annotate every record of INPUT_FILE with its near-duplicate fields; returns timings.

    The input is read twice as a stream (ids and texts first, then each record on its way
    out), and the output written atomically, replacing any earlier run's. The unique
    texts are embedded on `executor` (magpie.executor.LocalExecutor by default, or a
    magpie.ray_executor.RayExecutor: the same vectors); the search runs here.
    """
    summary = Summary("gen_dis")
    why = "given"
    if threshold is None:
        threshold, why = default_threshold(sentence_model)
    log.info(
        "sentence model %s, distance threshold %g (%s)",
        sentence_model or "all-MiniLM-L6-v2",
        threshold,
        why,
    )
    if not threshold > 0:
        raise InputError(f"--distance_threshold must be positive, got {threshold}")
    output = Path(output_file) if output_file else distance_file_name(input_file)
    ids, texts, id_field = read_ids_and_texts(input_file, text_field, id_field)
    summary.records_in = len(ids)

    timings: dict = {}
    dtype = resolve_dtype(dtype, pick_device(device))
    unique_texts: list[str] = list(dict.fromkeys(t for t in texts if t is not None))
    meta = {
        "sentence_model": _model_name(sentence_model),
        "n_unique": len(unique_texts),
        "texts_sha1": _texts_digest(unique_texts),
        "dtype": dtype,
    }
    index = None
    vectors_cache = None
    if faiss_index:
        index, vectors_cache = load_index(Path(faiss_index), meta)
        log.info("reusing %s (%d vectors)", faiss_index, index.ntotal)

    def vectors_of(unique: list[str]) -> np.ndarray:
        if vectors_cache is not None:
            return vectors_cache
        return embed_unique(unique, sentence_model, device, dtype, batch_size, executor, timings)

    if index is not None:
        import faiss

        # a saved flat index holds the vectors of an exact search; others are searched
        method = "exact" if isinstance(index, faiss.IndexFlat) else "approximate"
        index = None if method == "exact" else index
    t_search = time.time()
    result, built, vectors = annotate(
        ids,
        texts,
        vectors_of,
        threshold=threshold,
        method=method,
        device=None if device is None else pick_device(device),
        index=index,
        index_type=index_type,
        k=search_space_size,
        nprobe=nprobe,
        exact_max_rows=exact_max_rows,
        progress=progress,
    )
    timings["search_s"] = (
        time.time() - t_search - timings.get("embed_s", 0) - timings.get("model_load_s", 0)
    )
    if save_faiss_index and not faiss_index:
        index_path = output.with_suffix(".faiss")
        invalid = np.flatnonzero(~finite_rows(vectors)).tolist()
        save_index(
            index_path, built, vectors, meta | {"index": result.method, "invalid_rows": invalid}
        )
        log.info("saved the FAISS index to %s", index_path)

    t0 = time.time()
    write_annotated(input_file, output, ids, result, id_field)
    timings["write_s"] = time.time() - t0
    summary.records_out = len(ids)
    summary.flags["no text"] = sum(t is None for t in texts)
    summary.flags["non-finite embedding"] = sum(e is not None for e in result.errors)
    summary.flags["with near-duplicates"] = sum(c > 0 for c in result.repeat_count)
    summary.flags["represented by another"] = sum(
        rep is not None and rep != i for i, rep in enumerate(result.representative)
    )
    summary.flags = +summary.flags
    timings.update(n_unique=result.n_unique, method=result.method, dtype=dtype, output=str(output))
    log.info(
        "%d records, %d unique texts, %s search, threshold %g",
        len(ids),
        result.n_unique,
        result.method,
        threshold,
    )
    print(summary.line())
    return timings


def _model_name(name: str | None) -> str:

    return DEFAULT_SENTENCE_MODEL if (name or "") in _EMBEDDED_NAMES else str(name)
