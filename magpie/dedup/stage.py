"""The near-duplicate stage (the original's gen_dis.py): read ids and texts, embed the
unique texts (a Step on the executor: here, or spread over Ray replicas), search on this
node, write every record with its fields (see magpie.dedup)."""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path

import numpy as np

from magpie import embeddings
from magpie.dedup.records import (
    Scan,
    distance_file_name,
    neighbours_of,
    scan_input,
    texts_digest,
    write_annotated,
)
from magpie.dedup.search import DEFAULT_THRESHOLD, finite_rows, load_index, save_index
from magpie.dtypes import resolve_dtype
from magpie.embeddings import _EMBEDDED_NAMES, DEFAULT_SENTENCE_MODEL, pick_device
from magpie.executor import LocalExecutor
from magpie.records import InputError, Spool
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
    """The digest of unique texts that a saved index's description holds (see
    magpie.dedup.records.texts_digest)."""
    return texts_digest(texts)


def embed_unique(
    texts: Spool,
    lengths: np.ndarray,
    sentence_model: str = "",
    device: str | int | None = None,
    dtype: str = "float32",
    batch_size: int | None = None,
    executor=None,
    timings: dict | None = None,
) -> np.ndarray:
    """Unit float32 embeddings of the unique, non-empty texts parked in `texts` (their
    `lengths` known from the scan) as EmbedSteps on `executor` (default: here), reading
    one segment of texts at a time (embeddings.embed_planned); the model is released
    afterwards (Ray replicas stopped). `dtype` is already resolved (resolve_dtype):
    replicas use the driver's choice. Fills `timings` with model_load_s (local only:
    replicas load while they embed) and embed_s.
    """

    name = sentence_model or None
    load = functools.partial(embeddings.load_sentence_model, name, device, dtype)
    float32_model = functools.partial(embeddings.load_sentence_model, name, device, "float32")
    timings = {} if timings is None else timings
    executor = executor or LocalExecutor()
    try:
        if isinstance(executor, LocalExecutor):
            t0 = time.time()
            executor.model(load)
            timings["model_load_s"] = time.time() - t0
        t0 = time.time()
        vectors = embeddings.embed_planned(
            executor,
            load,
            lengths,
            lambda rows: list(texts.read(rows)),
            batch_size or embeddings.default_batch_size(pick_device(device)),
            embeddings.sentence_max_tokens(name),
            float32_model=float32_model,
        )
        timings["embed_s"] = time.time() - t0
    finally:
        executor.release(load)
    return vectors


def _search_options(
    threshold, method, index_type, search_space_size, nprobe, exact_max_rows, device, progress
) -> dict:
    """find_neighbours' options from the stage's flags."""
    return dict(
        threshold=threshold,
        method=method,
        device=None if device is None else pick_device(device),
        index_type=index_type,
        k=search_space_size,
        nprobe=nprobe,
        exact_max_rows=exact_max_rows,
        progress=progress,
    )


def _checked_threshold(threshold: float | None, sentence_model: str | None) -> float:
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
    return threshold


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
    out), and the output written atomically, replacing any earlier run's. What is held:
    ids, per-record numbers and the unique texts' vectors; the unique texts wait on disk
    (a records.Spool) for the embedding. They are embedded on `executor`
    (magpie.executor.LocalExecutor by default, or a magpie.ray_executor.RayExecutor: the
    same vectors); the search runs here.
    """
    summary = Summary("gen_dis")
    threshold = _checked_threshold(threshold, sentence_model)
    output = Path(output_file) if output_file else distance_file_name(input_file)
    timings: dict = {}
    dtype = resolve_dtype(dtype, pick_device(device))
    spill = None if faiss_index else Spool(output.parent if output.parent.is_dir() else None)
    try:
        scan = scan_input(input_file, text_field, id_field, spill)
        meta = {
            "sentence_model": _model_name(sentence_model),
            "n_unique": scan.n_unique,
            "texts_sha1": scan.texts_sha1,
            "dtype": dtype,
        }
        index = None
        if faiss_index:
            index, vectors = load_index(Path(faiss_index), meta)
            log.info("reusing %s (%d vectors)", faiss_index, index.ntotal)
            import faiss

            # a saved flat index holds the vectors of an exact search; others are searched
            method = "exact" if isinstance(index, faiss.IndexFlat) else "approximate"
            index = None if method == "exact" else index
        elif scan.n_unique:
            vectors = embed_unique(
                spill, scan.lengths, sentence_model, device, dtype, batch_size, executor, timings
            )
        else:
            vectors = None
    finally:
        if spill is not None:
            spill.close()
    if vectors is None:
        vectors = np.zeros((0, 1), dtype=np.float32)
    search = _search_options(
        threshold, method, index_type, search_space_size, nprobe, exact_max_rows, device, progress
    )
    result, built = _search(scan, vectors, timings, index=index, **search)
    if save_faiss_index and not faiss_index:
        index_path = output.with_suffix(".faiss")
        invalid = np.flatnonzero(~finite_rows(vectors)).tolist()
        save_index(
            index_path, built, vectors, meta | {"index": result.method, "invalid_rows": invalid}
        )
        log.info("saved the FAISS index to %s", index_path)
    _write(input_file, output, scan, result, summary, timings, threshold)
    timings["dtype"] = dtype
    return timings


def run_distance_on_vectors(
    input_file: str | os.PathLike,
    vectors: np.ndarray | str | os.PathLike,
    output_file: str | os.PathLike | None = None,
    threshold: float | None = None,
    text_field: str = "instruction",
    id_field: str | None = None,
    method: str = "auto",
    index_type: str = "ivf",
    search_space_size: int = 16,
    nprobe: int = 16,
    exact_max_rows: int | None = None,
    device: str | int | None = None,
    progress: bool = True,
) -> dict:
    """run_distance with the embeddings given: no sentence model is loaded (benchmarks
    of the search and the streaming passes, embeddings made elsewhere).

    `vectors` is an (N, d) float32 array, or a .npy file of one (memory-mapped: only the
    unique texts' rows are read), with one unit-length row per record of INPUT_FILE in
    file order (N = the number of records). As in run_distance, records with the same
    text are exact copies (distance 0) and only the first one's row is used; rows of
    records without text are ignored. `threshold` defaults to the embedded model's
    (0.1, default_threshold). The other arguments are run_distance's; returns timings.
    """
    summary = Summary("gen_dis")
    threshold = _checked_threshold(threshold, "")
    output = Path(output_file) if output_file else distance_file_name(input_file)
    timings: dict = {}
    scan = scan_input(input_file, text_field, id_field)
    if isinstance(vectors, (str, os.PathLike)):
        vectors = np.load(vectors, mmap_mode="r")
    if vectors.ndim != 2 or len(vectors) != len(scan.ids):
        raise InputError(
            f"{input_file}: {len(scan.ids)} records but vectors of shape {vectors.shape}; "
            "give one row per record"
        )
    unique = np.ascontiguousarray(vectors[scan.first], dtype=np.float32)
    if not scan.n_unique:
        unique = np.zeros((0, 1), dtype=np.float32)
    search = _search_options(
        threshold, method, index_type, search_space_size, nprobe, exact_max_rows, device, progress
    )
    result, _ = _search(scan, unique, timings, **search)
    _write(input_file, output, scan, result, summary, timings, threshold)
    return timings


def _search(scan: Scan, vectors: np.ndarray, timings: dict, **search):
    """neighbours_of on the scan, timed."""
    t0 = time.time()
    result, built = neighbours_of(scan.ids, scan.which, vectors, **search)
    timings["search_s"] = time.time() - t0
    return result, built


def _write(input_file, output: Path, scan: Scan, result, summary, timings, threshold) -> None:
    """The annotated records (a second streaming pass), the summary line and timings."""
    summary.records_in = len(scan.ids)
    t0 = time.time()
    write_annotated(input_file, output, scan.ids, result, scan.id_field)
    timings["write_s"] = time.time() - t0
    summary.records_out = len(scan.ids)
    summary.flags["no text"] = int((scan.which < 0).sum())
    summary.flags["non-finite embedding"] = sum(e is not None for e in result.errors)
    summary.flags["with near-duplicates"] = sum(c > 0 for c in result.repeat_count)
    summary.flags["represented by another"] = sum(
        rep is not None and rep != i for i, rep in enumerate(result.representative)
    )
    summary.flags = +summary.flags
    timings.update(n_unique=result.n_unique, method=result.method, output=str(output))
    log.info(
        "%d records, %d unique texts, %s search, threshold %g",
        len(scan.ids),
        result.n_unique,
        result.method,
        threshold,
    )
    print(summary.line())


def _model_name(name: str | None) -> str:

    return DEFAULT_SENTENCE_MODEL if (name or "") in _EMBEDDED_NAMES else str(name)
