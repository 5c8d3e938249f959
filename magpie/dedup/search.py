"""Numeric near-neighbour search over unit vectors: exact (blocked matrix products, torch
on the GPU when there is one) and FAISS approximate (IVF or HNSW; on the GPU when
faiss-gpu sees one), and the FAISS index saved and loaded with its description.

Vectors in, per-vector results out (`Neighbours`); what a record is, and how its text
maps to a vector, is `magpie.dedup.records`. Two vectors are near-duplicates when the
squared L2 distance between them is below `threshold` (for unit vectors d = 2 - 2·cos).
The recall of approximate search against exact search is measured in
bench/bench_dedup.py.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from magpie.dtypes import native_bf16
from magpie.records import InputError, write_json

log = logging.getLogger("magpie")

DEFAULT_THRESHOLD = 0.05  # the original's, set for all-mpnet-base-v2 (magpie.dedup.stage)

EXACT_MAX_ROWS_CPU = 50_000
EXACT_MAX_ROWS_GPU = 2_000_000
_NONE = np.iinfo(np.int64).max  # "no neighbour" in rank arrays


@dataclass
class Neighbours:
    """Per unique vector: nearest other vector, and the weighted neighbours within threshold."""

    min_distance: np.ndarray  # float32, nan when there is no other vector
    count: np.ndarray  # int64, records (weights) within the threshold, self excluded
    rep_rank: np.ndarray  # int64, smallest rank among those neighbours; _NONE if none
    method: str = "exact"
    stats: dict = field(default_factory=dict)


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.nonzero for a sparse 2-D mask, several times faster: scan it 8 bytes at a time."""
    flat = mask.reshape(-1)
    if flat.size % 8:
        flat = np.concatenate([flat, np.zeros(8 - flat.size % 8, dtype=bool)])
    words = np.flatnonzero(flat.view(np.uint64))
    i, j = np.nonzero(flat.reshape(-1, 8)[words])
    return np.divmod(words[i] * 8 + j, mask.shape[1])


def finite_rows(vectors: np.ndarray) -> np.ndarray:
    """True for each vector whose values are all finite. A NaN row would poison every
    maximum it enters (a whole block of rows in exact search) and FAISS's training."""
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        return np.ones(len(vectors), dtype=bool)
    return np.isfinite(vectors).all(axis=1)


def _expand(found: Neighbours, good: np.ndarray) -> Neighbours:
    """Results searched over the finite rows only, put back in place: a non-finite row
    has no distance (nan), no neighbours and no representative."""
    n = len(good)
    min_distance = np.full(n, np.nan, dtype=np.float32)
    count = np.zeros(n, dtype=np.int64)
    rep = np.full(n, _NONE, dtype=np.int64)
    min_distance[good], count[good], rep[good] = found.min_distance, found.count, found.rep_rank
    return Neighbours(min_distance, count, rep, found.method, found.stats)


def exact_neighbours(
    vectors: np.ndarray,
    weights: np.ndarray,
    ranks: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    device: str = "cpu",
    block: int | None = None,
    bf16: bool | None = None,
    progress: bool = True,
) -> Neighbours:
    """Exact search by blocked matrix products over the upper triangle of blocks: each
    pair's product is computed once and read both by row and by column.

    Why it is fast and still exact: where the CPU has native bf16 the products run in
    bf16 (2-3x faster); a bf16 similarity of unit vectors is within 0.006 of the float32
    one, so the products only pick candidates, with a margin of 0.01: per row and block,
    the pairs that may lie within the threshold and those that may be the nearest. Every
    candidate is recomputed in float32 and only those values are used. Reductions run in
    numpy, many times faster than torch's on the CPU.

    `weights[i]` is how many records share vector i, `ranks[i]` the smallest rank among
    them; both feed the counts and representatives of the other vectors. A non-finite
    vector is left out of the search (see finite_rows): nan distance, no neighbours.
    """
    good = finite_rows(vectors)
    if not good.all():
        found = exact_neighbours(
            vectors[good], weights[good], ranks[good], threshold, device, block, bf16, progress
        )
        return _expand(found, good)
    n = len(vectors)
    if n >= 2 and device.startswith("cuda"):
        return _exact_torch(vectors, weights, ranks, threshold, device, block or 2048, progress)
    block = block or 1024  # on a CPU 1024 beat 2048 by 8-15% (blocks stay in cache)
    best = np.full(n, -np.inf, dtype=np.float32)
    count = np.zeros(n, dtype=np.int64)
    rep = np.full(n, _NONE, dtype=np.int64)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    bf16 = native_bf16("cpu") if bf16 is None else bf16
    eps = np.float32(0.01 if bf16 else 1e-5)
    cut = np.float32(1.0 - threshold / 2) - eps
    if bf16:
        import torch

        xb = torch.from_numpy(x).to(torch.bfloat16)

    def products(a: int, c: int) -> np.ndarray:
        if not bf16:
            return x[a : a + block] @ x[c : c + block].T
        bits = (xb[a : a + block] @ xb[c : c + block].T).view(torch.int16).numpy()
        out = np.left_shift(bits.view(np.uint16), 16, dtype=np.uint32)  # bf16 -> float32
        return out.view(np.float32)

    def exact(rows: np.ndarray, cols: np.ndarray) -> None:
        keep = rows != cols
        rows, cols = rows[keep], cols[keep]
        for k in range(0, len(rows), 1 << 16):
            rr, cc = rows[k : k + (1 << 16)], cols[k : k + (1 << 16)]
            sims = np.einsum("ij,ij->i", x[rr], x[cc])
            np.maximum.at(best, rr, sims)
            near = np.maximum(np.float32(0), 2 - 2 * sims) < threshold
            np.add.at(count, rr[near], weights[cc[near]])
            np.minimum.at(rep, rr[near], ranks[cc[near]])

    starts = list(range(0, n, block)) if n >= 2 else []
    pairs = [(a, c) for a in starts for c in starts if c >= a]
    for a, c in tqdm(pairs, desc="exact search", unit="block", disable=not progress):
        sims = products(a, c)
        if a == c:
            np.fill_diagonal(sims, -np.inf)  # the record itself, by identity
        floor = np.minimum(sims.max(axis=1) - 2 * eps, cut)
        qi, cj = _nonzero(sims >= floor[:, None])
        exact(qi + a, cj + c)
        if a != c:  # the same products, read by column
            floor = np.minimum(sims.max(axis=0) - 2 * eps, cut)
            qi, cj = _nonzero(sims >= floor[None, :])
            exact(cj + c, qi + a)
    min_distance = np.maximum(np.float32(0), 2 - 2 * best)
    min_distance[np.isinf(min_distance)] = np.nan
    return Neighbours(min_distance, count, rep, "exact")


def _exact_torch(vectors, weights, ranks, threshold, device, block, progress) -> Neighbours:
    """exact_neighbours on a GPU. The products run in bf16, which is within 0.006 of the
    float32 similarity for unit vectors (input and output rounding): bf16 only picks
    candidates, with a margin of 0.01 (pairs that may lie within the threshold and, per
    row and block, those that may be the nearest); every candidate is recomputed in
    float32 and only those values are used. Non-finite vectors are left out, as in
    exact_neighbours."""
    import torch

    good = finite_rows(vectors)
    if not good.all():
        found = _exact_torch(
            vectors[good], weights[good], ranks[good], threshold, device, block, progress
        )
        return _expand(found, good)
    n = len(vectors)
    eps = 0.01
    cut = 1.0 - threshold / 2 - eps
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)
    xs = x.to(torch.bfloat16)
    w = torch.from_numpy(weights.astype(np.int64)).to(device)
    r = torch.from_numpy(ranks.astype(np.int64)).to(device)
    best = torch.full((n,), -math.inf, device=device)
    count = torch.zeros(n, dtype=torch.int64, device=device)
    rep = torch.full((n,), _NONE, dtype=torch.int64, device=device)

    def reduce(rows, cols) -> None:  # float32 truth for candidate pairs
        for k in range(0, len(rows), 1 << 20):
            rr, cc = rows[k : k + (1 << 20)], cols[k : k + (1 << 20)]
            sims = (x[rr] * x[cc]).sum(dim=1)
            best.scatter_reduce_(0, rr, sims, reduce="amax")
            near = (2 - 2 * sims).clamp_min(0) < threshold
            count.index_add_(0, rr[near], w[cc[near]])
            rep.scatter_reduce_(0, rr[near], r[cc[near]], reduce="amin")

    starts = list(range(0, n, block))
    pairs = [(a, c) for a in starts for c in starts if c >= a]
    with torch.inference_mode():
        for a, c in tqdm(pairs, desc="exact search", unit="block", disable=not progress):
            sims = xs[a : a + block] @ xs[c : c + block].T
            if a == c:
                sims.fill_diagonal_(-math.inf)
            floor = torch.clamp(torch.amax(sims, dim=1).float() - 2 * eps, max=cut)
            qi, cj = (sims >= floor[:, None]).nonzero(as_tuple=True)
            reduce(qi + a, cj + c)
            if a != c:
                floor = torch.clamp(torch.amax(sims, dim=0).float() - 2 * eps, max=cut)
                qi, cj = (sims >= floor[None, :]).nonzero(as_tuple=True)
                reduce(cj + c, qi + a)
    min_distance = (2 - 2 * best).clamp_min(0).cpu().numpy().astype(np.float32)
    min_distance[np.isinf(min_distance)] = np.nan
    return Neighbours(min_distance, count.cpu().numpy(), rep.cpu().numpy(), "exact")


def build_faiss_index(vectors: np.ndarray, index_type: str = "ivf", nlist: int | None = None):
    """A FAISS inner-product index over unit vectors (IVF-Flat or HNSW-Flat), filled.
    A non-finite vector is stored as zeros (FAISS fails on NaN) and left out of the IVF
    training; searches skip it (approximate_neighbours)."""
    import faiss

    good = finite_rows(vectors)
    if not good.all():
        vectors = np.where(good[:, None], vectors, 0).astype(np.float32)
        n_good = int(good.sum())
    else:
        n_good = len(vectors)
    n, dim = vectors.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 64
    elif index_type == "ivf":
        nlist = nlist or max(1, min(int(2 * math.sqrt(n_good)), n_good // 40))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = vectors[good] if n_good < n else vectors
        if n_good > 64 * nlist:
            pick = np.random.default_rng(0).choice(n_good, 64 * nlist, replace=False)
            sample = sample[np.sort(pick)]
        index.cp.seed = 0
        index.train(sample)
    else:
        raise InputError(f"unknown index type {index_type!r}: use ivf, hnsw or flat")
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def _gpu_clone(index):
    """The index on all GPUs when faiss-gpu sees one and supports it; else None."""
    try:
        import faiss

        if faiss.get_num_gpus() > 0 and not isinstance(index, faiss.IndexHNSW):
            return faiss.index_cpu_to_all_gpus(index)
    except (AttributeError, RuntimeError) as e:
        log.info("FAISS GPU index not used (%s)", e)
    return None


def approximate_neighbours(
    vectors: np.ndarray,
    weights: np.ndarray,
    ranks: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    index=None,
    index_type: str = "ivf",
    k: int = 16,
    nprobe: int = 16,
    batch_size: int = 4096,
    progress: bool = True,
) -> tuple[Neighbours, object]:
    """FAISS k-NN search; a query whose k hits all lie within the threshold is searched
    again with a larger k until its list is complete, so counts are not capped by k.
    Non-finite vectors are neither searched nor found (nan distance, no neighbours)."""
    import faiss

    n = len(vectors)
    min_distance = np.full(n, np.nan, dtype=np.float32)
    count = np.zeros(n, dtype=np.int64)
    rep_rank = np.full(n, _NONE, dtype=np.int64)
    if index is None:
        index = build_faiss_index(vectors, index_type)
    good = finite_rows(vectors)
    if not good.all():
        vectors = np.where(good[:, None], vectors, 0).astype(np.float32)
    if hasattr(index, "nprobe"):
        index.nprobe = min(nprobe, index.nlist)
    if n < 2:
        return Neighbours(min_distance, count, rep_rank, "approximate"), index
    gpu = _gpu_clone(index)
    if gpu is not None and hasattr(index, "nprobe"):
        faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", index.nprobe)
    deepened = 0
    searched = np.flatnonzero(good)
    for start in tqdm(
        range(0, len(searched), batch_size), desc="ann search", unit="batch", disable=not progress
    ):
        queries = searched[start : start + batch_size]
        kk = min(n, k + 1)
        while len(queries):
            searcher = gpu if gpu is not None and kk <= 2048 else index
            sims, hits = searcher.search(vectors[queries], kk)
            full = _annotate(
                queries, sims, hits, threshold, weights, ranks, min_distance, count, rep_rank, good
            )
            if kk >= n:
                break
            queries = queries[full]  # saturated lists: search again, wider
            deepened += len(queries)
            kk = min(n, kk * 4)
    return Neighbours(min_distance, count, rep_rank, "approximate", {"deepened": deepened}), index


def _annotate(queries, sims, hits, threshold, weights, ranks, min_distance, count, rep_rank, good):
    """Fill the outputs of `queries` from one k-NN result; True where all k hits were
    within the threshold (the list may continue past k). Hits on rows not `good` (the
    zeros standing for non-finite vectors) are not neighbours."""
    valid = (hits >= 0) & (hits != queries[:, None])
    valid &= good[np.where(hits >= 0, hits, 0)]
    d = np.where(valid, np.maximum(0.0, 2 - 2 * sims), np.inf).astype(np.float32)
    nearest = d.min(axis=1)
    min_distance[queries] = np.where(np.isinf(nearest), np.nan, nearest)
    within = valid & (d < threshold)
    safe = np.where(within, hits, 0)
    count[queries] = np.where(within, weights[safe], 0).sum(axis=1)
    rep_rank[queries] = np.where(within, ranks[safe], _NONE).min(axis=1)
    # saturated: every slot is the query itself or within the threshold; more may follow
    return (within | (hits == queries[:, None])).all(axis=1)


def _default_device() -> str:
    """CUDA when torch sees it; torch is imported here anyway for the bf16 products."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def find_neighbours(
    vectors: np.ndarray,
    weights: np.ndarray,
    ranks: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    method: str = "auto",
    device: str | None = None,
    index=None,
    index_type: str = "ivf",
    k: int = 16,
    nprobe: int = 16,
    exact_max_rows: int | None = None,
    progress: bool = True,
) -> tuple[Neighbours, object]:
    """Exact search up to `exact_max_rows` unique texts (or with method="exact"),
    FAISS approximate search above it (or with method="approximate")."""
    dev = device or _default_device()
    if method == "auto":
        limit = exact_max_rows or (
            EXACT_MAX_ROWS_GPU if dev.startswith("cuda") else EXACT_MAX_ROWS_CPU
        )
        method = "exact" if len(vectors) <= limit else "approximate"
    if method == "exact":
        return exact_neighbours(vectors, weights, ranks, threshold, dev, progress=progress), index
    if method in ("approximate", "ann"):
        return approximate_neighbours(
            vectors, weights, ranks, threshold, index, index_type, k, nprobe, progress=progress
        )
    raise InputError(f"unknown search method {method!r}: use auto, exact or approximate")


def save_index(path: Path, index, vectors: np.ndarray, meta: dict) -> None:
    """Write the FAISS index (a flat one after exact search) and its description."""
    import faiss

    if index is None:
        index = build_faiss_index(vectors, "flat")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The description goes first and comes back last: a crash in between leaves an index
    # without one (refused by load_index), never an index with another's description.
    Path(f"{path}.json").unlink(missing_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)
    write_json(f"{path}.json", meta)


def load_index(path: Path, meta: dict):
    """A saved index and its vectors, refused when it was built from other texts/model."""
    import faiss

    info_path = Path(f"{path}.json")
    if not path.exists() or not info_path.exists():
        raise InputError(f"{path}: index (or its {info_path.name}) not found")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    keys = ("sentence_model", "dtype", "n_unique", "texts_sha1")
    changed = [k for k in keys if info.get(k, "float32") != meta.get(k, "float32")]
    if changed:
        raise InputError(
            f"{path}: built from other data ({', '.join(changed)} differ); "
            "rerun without --faiss_index to rebuild it"
        )
    index = faiss.read_index(str(path))
    if hasattr(index, "make_direct_map"):
        index.make_direct_map()
    vectors = index.reconstruct_n(0, index.ntotal) if index.ntotal else None
    if vectors is not None and info.get("invalid_rows"):
        vectors[info["invalid_rows"]] = np.nan  # stored as zeros; still not searchable
    return index, vectors
