"""Near-duplicate detection (the original's gen_dis.py), exact and fast.

Semantics kept from the original: instructions are embedded with a sentence model,
L2-normalised, and two records are near-duplicates when the squared L2 distance between
their embeddings is below `threshold` (for unit vectors d = 2 - 2·cos). The original set
0.05 (cos > 0.975) for all-mpnet-base-v2; the embedded all-MiniLM-L6-v2 spreads the same
pairs further apart and defaults to 0.1, calibrated on tests/fixtures/dedup (see
`default_threshold`).
Every record gets

- `min_neighbor_distance`: distance to the nearest *other* record (0.0 for an exact copy,
  null when there is no other record);
- `repeat_count`: how many other records lie within the threshold (never capped);
- `min_similar_<id>` (`min_similar_conversation_id`, or `min_similar_uuid` when records
  carry `uuid`): the representative of its near-duplicate group, i.e. the smallest id among
  the record itself and its neighbours within the threshold; null when it has none.

Ids are ordered "naturally" (`magpie_2` before `magpie_10`), so on the concatenated ShareGPT
file the representative is the earliest row, as in the original, but it no longer depends
on the order of the input. The original's defects are gone: the record itself is excluded
by identity, not by rank (exact copies), N < 2 works, counts are exact, a rerun overwrites.

Search: identical texts are embedded and searched once (a copy is a neighbour at distance
0). Up to `exact_max_rows` unique texts, exact search by blocked matrix products (torch, on
the GPU when there is one); above it, FAISS approximate search (IVF or HNSW; on the GPU when
faiss-gpu sees one), whose recall against exact search is measured in bench/bench_dedup.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from magpie.conversation import ConversationError, read
from magpie.embeddings import native_bf16, pick_device, resolve_dtype
from magpie.records import InputError, iter_records, where, write_json, write_records
from magpie.stage import Summary, json_type

log = logging.getLogger("magpie")

DEFAULT_THRESHOLD = 0.05  # the original's, set for all-mpnet-base-v2
# all-MiniLM-L6-v2's default, calibrated on 44 same-request and 52 different-request
# pairs (tests/fixtures/dedup/threshold_pairs.jsonl): it catches 39/44 same-request
# pairs (0.05 catches 34/44) and merges only the one different-request pair no threshold
# separates (Fahrenheit/Celsius swapped, 0.017); the next different-request pair lies
# at 0.109.
MINILM_THRESHOLD = 0.1


def default_threshold(sentence_model: str | None) -> tuple[float, str]:
    """The distance threshold for a sentence model when none is given, and why."""
    from magpie.embeddings import _EMBEDDED_NAMES

    if (sentence_model or "") in _EMBEDDED_NAMES:
        return MINILM_THRESHOLD, "calibrated for all-MiniLM-L6-v2"
    if str(sentence_model).rstrip("/").endswith("all-mpnet-base-v2"):
        return DEFAULT_THRESHOLD, "the original's, set for all-mpnet-base-v2"
    return (
        DEFAULT_THRESHOLD,
        "the original's value for all-mpnet-base-v2, not calibrated for this model",
    )


EXACT_MAX_ROWS_CPU = 50_000
EXACT_MAX_ROWS_GPU = 2_000_000
_NONE = np.iinfo(np.int64).max  # "no neighbour" in rank arrays
# `dedup_error` of a record whose embedding stayed NaN/inf, in float32 too.
NON_FINITE = "non-finite embedding (NaN or inf, recomputed in float32 too): not searched"


# ---------------------------------------------------------------------------------------
# Records in, records out


def distance_file_name(input_file: str | os.PathLike) -> Path:
    """<input stem>_distance.jsonl next to the input, as the original names it."""
    p = Path(input_file)
    return p.with_name(p.stem + "_distance.jsonl")


def id_field_of(record: dict) -> str:
    """The id the representative is named by: uuid, else conversation_id, else id."""
    for name in ("uuid", "conversation_id", "id"):
        if name in record:
            return name
    raise InputError(
        "records need an id (uuid, conversation_id or id); run the concatenation stage "
        "(exp/concat.py) first, or pass --id_field"
    )


def similar_field(id_field: str) -> str:
    return f"min_similar_{id_field}"


def text_of(record: dict, text_field: str = "instruction") -> str | None:
    """The text compared: the instruction (the first user turn, read by
    magpie.conversation from any format); None when it has none.

    Another `text_field` is read as it is. Raises KeyError when the record has neither
    that field nor a conversation, ValueError (ConversationError) when it is malformed.
    """
    if text_field != "instruction":
        if text_field not in record:
            raise KeyError(text_field)
        value = record[text_field]
    else:
        conv = read(record)
        if conv.source is None:
            raise KeyError(text_field)
        value = conv.first_user
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def natural_key(value) -> tuple:
    """Order ids as people do: 'x_2' < 'x_10'; ints by value; ties broken by the text."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        value = json.dumps(value, sort_keys=True)
    if isinstance(value, int):
        return (((0, value),), str(value))
    parts = tuple(
        (0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", value) if p != ""
    )
    return (parts, value)


# ---------------------------------------------------------------------------------------
# Search


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


# ---------------------------------------------------------------------------------------
# Per-record results


@dataclass
class DistanceResult:
    """Per-record outputs, in input order."""

    min_neighbor_distance: list  # float | None
    repeat_count: list  # int
    representative: list  # index of the representative record | None
    n_unique: int
    method: str
    errors: list = field(default_factory=list)  # str | None: why a record was not searched


def annotate(
    ids: list, texts: list[str | None], vectors_of=None, **search
) -> tuple[DistanceResult, object, np.ndarray]:
    """Near-duplicate outputs for records given by id and text (None or blank: no text).

    `vectors_of(unique_texts) -> array` embeds; exact copies are embedded once. Returns
    the result, the FAISS index (if one was built) and the unique vectors.
    """
    rank = np.empty(len(ids), dtype=np.int64)
    rank[sorted(range(len(ids)), key=lambda i: natural_key(ids[i]))] = np.arange(len(ids))
    unique: dict[str, int] = {}
    which = np.full(len(texts), -1, dtype=np.int64)
    for i, t in enumerate(texts):
        t = t.strip() if isinstance(t, str) else ""
        if t:  # copies up to surrounding spaces share one embedding
            which[i] = unique.setdefault(t, len(unique))
    has_text = which >= 0
    weights = np.bincount(which[has_text], minlength=len(unique)).astype(np.int64)
    min_rank = np.full(len(unique), _NONE, dtype=np.int64)
    np.minimum.at(min_rank, which[has_text], rank[has_text])
    vectors = vectors_of(list(unique)) if unique else np.zeros((0, 1), dtype=np.float32)
    found, index = find_neighbours(vectors, weights, min_rank, **search)
    good = finite_rows(vectors)
    by_rank = np.empty(len(ids), dtype=np.int64)
    by_rank[rank] = np.arange(len(ids))
    dist, counts, reps, errors = [], [], [], []
    for i in range(len(ids)):
        u = which[i]
        if u < 0:
            dist.append(None)
            counts.append(0)
            reps.append(None)
            errors.append(None)
            continue
        copies = int(weights[u]) - 1
        n_near = copies + int(found.count[u])
        if good[u]:
            nearest = 0.0 if copies else found.min_distance[u]
            dist.append(None if np.isnan(nearest) else float(nearest))
            errors.append(None)
        else:  # its neighbours are unknown; exact copies of its text are still copies
            dist.append(None)
            errors.append(NON_FINITE)
        counts.append(n_near)
        reps.append(int(by_rank[min(min_rank[u], found.rep_rank[u])]) if n_near else None)
    return DistanceResult(dist, counts, reps, len(unique), found.method, errors), index, vectors


# ---------------------------------------------------------------------------------------
# The stage


def _texts_digest(texts: list[str]) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


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
) -> dict:
    """Annotate every record of INPUT_FILE with its near-duplicate fields; returns timings.

    The input is read twice as a stream (ids and texts first, then each record on its way
    out), and the output written atomically, replacing any earlier run's.
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
    ids, texts = [], []
    seen: dict = {}
    for i, record in enumerate(iter_records(input_file)):
        if id_field is None:
            try:
                id_field = id_field_of(record)
            except InputError as e:
                raise InputError(f"{where(input_file, i)}: {e}") from None
        if id_field not in record:
            raise InputError(f"{where(input_file, i)}: field '{id_field}' is missing")
        if ids and json_type(record[id_field]) != json_type(ids[0]):
            raise InputError(
                f"{where(input_file, i)}: {id_field} {record[id_field]!r} is a "
                f"{json_type(record[id_field])} but earlier ids are {json_type(ids[0])}s; "
                "one id column holds one type"
            )
        key = json.dumps(record[id_field], sort_keys=True)
        if key in seen:
            raise InputError(
                f"{where(input_file, i)}: {id_field} {record[id_field]!r} repeats "
                f"{where(input_file, seen[key])}; ids must be unique"
            )
        seen[key] = i
        try:
            texts.append(text_of(record, text_field))
        except KeyError:
            raise InputError(
                f"{where(input_file, i)}: field '{text_field}' is missing "
                "(and no conversations/conversation/messages to take it from)"
            ) from None
        except ConversationError as e:
            raise InputError(f"{where(input_file, i)}: {e}") from None
        ids.append(record[id_field])
    del seen
    if not ids:
        raise InputError(f"{input_file}: no records")
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
        from magpie.embeddings import embed_texts, load_sentence_model

        t0 = time.time()
        model = load_sentence_model(sentence_model or None, device, dtype)
        timings["model_load_s"] = time.time() - t0
        t0 = time.time()
        out = embed_texts(
            model,
            unique,
            batch_size=batch_size,
            progress=progress,
            float32_model=lambda: load_sentence_model(sentence_model or None, device, "float32"),
        )
        timings["embed_s"] = time.time() - t0
        return out

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
    sim_key = similar_field(id_field)

    def annotated() -> Iterator[dict]:
        for i, record in enumerate(iter_records(input_file)):
            record["min_neighbor_distance"] = result.min_neighbor_distance[i]
            record["repeat_count"] = result.repeat_count[i]
            rep = result.representative[i]
            record[sim_key] = None if rep is None else ids[rep]
            record.pop("dedup_error", None)  # an earlier run's
            if result.errors[i]:
                record["dedup_error"] = result.errors[i]
            yield record

    write_records(output, annotated())
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
    from magpie.embeddings import _EMBEDDED_NAMES, DEFAULT_SENTENCE_MODEL

    return DEFAULT_SENTENCE_MODEL if (name or "") in _EMBEDDED_NAMES else str(name)
