"""Records in, records out: ids and the text compared, read from any record format, and
the near-duplicate fields written back per record.

Ids are ordered "naturally" (`magpie_2` before `magpie_10`), so on the concatenated
ShareGPT file the representative is the earliest row, as in the original, but it no
longer depends on the order of the input. Identical texts are embedded and searched once
(a copy is a neighbour at distance 0).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from magpie.conversation import ConversationError, read
from magpie.dedup.search import _NONE, find_neighbours, finite_rows
from magpie.records import InputError, Spool, iter_records, where, write_records
from magpie.stage import json_type

# `dedup_error` of a record whose embedding stayed NaN/inf, in float32 too.
NON_FINITE = "non-finite embedding (NaN or inf, recomputed in float32 too): not searched"


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


@dataclass
class DistanceResult:
    """Per-record outputs, in input order."""

    min_neighbor_distance: list  # float | None
    repeat_count: list  # int
    representative: list  # index of the representative record | None
    n_unique: int
    method: str
    errors: list = field(default_factory=list)  # str | None: why a record was not searched


def neighbours_of(
    ids: list, which: np.ndarray, vectors: np.ndarray, **search
) -> tuple[DistanceResult, object]:
    """Near-duplicate outputs of records given by id and `which[i]`, the row of `vectors`
    (one per unique text) holding record i's embedding, -1 for a record without text.
    `search` goes to find_neighbours. Returns the result and the FAISS index, if one was
    built."""
    rank = np.empty(len(ids), dtype=np.int64)
    rank[sorted(range(len(ids)), key=lambda i: natural_key(ids[i]))] = np.arange(len(ids))
    has_text = which >= 0
    weights = np.bincount(which[has_text], minlength=len(vectors)).astype(np.int64)
    min_rank = np.full(len(vectors), _NONE, dtype=np.int64)
    np.minimum.at(min_rank, which[has_text], rank[has_text])
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
    return DistanceResult(dist, counts, reps, len(vectors), found.method, errors), index


def annotate(
    ids: list, texts: list[str | None], vectors_of=None, **search
) -> tuple[DistanceResult, object, np.ndarray]:
    """Near-duplicate outputs for records given by id and text (None or blank: no text).

    `vectors_of(unique_texts) -> array` embeds; exact copies are embedded once. Returns
    the result, the FAISS index (if one was built) and the unique vectors.
    """
    unique: dict[str, int] = {}
    which = np.full(len(texts), -1, dtype=np.int64)
    for i, t in enumerate(texts):
        t = t.strip() if isinstance(t, str) else ""
        if t:  # copies up to surrounding spaces share one embedding
            which[i] = unique.setdefault(t, len(unique))
    vectors = vectors_of(list(unique)) if unique else np.zeros((0, 1), dtype=np.float32)
    result, index = neighbours_of(ids, which, vectors, **search)
    return result, index, vectors


# Text as bytes: a lone surrogate (JSON can hold one) passes through unchanged.
_UTF8 = ("utf-8", "surrogatepass")


def encode(text: str) -> bytes:
    return text.encode(*_UTF8)


@dataclass
class Scan:
    """What the first pass over the input keeps: per record its id and `which` unique
    text it has (-1: none); per unique text (in order of first appearance) its first
    record and its length in characters; the SHA-1 of the unique texts (texts_digest).
    The texts themselves are parked in a Spool when one is given, never held."""

    ids: list
    which: np.ndarray
    id_field: str
    first: np.ndarray
    lengths: np.ndarray
    texts_sha1: str

    @property
    def n_unique(self) -> int:
        return len(self.first)


def scan_input(
    input_file: str | os.PathLike,
    text_field: str = "instruction",
    id_field: str | None = None,
    spill: Spool | None = None,
) -> Scan:
    """Ids and unique texts of every record, read as a stream; ids must be present, of
    one JSON type and unique. Bad records raise InputError naming the line.

    Why a hash: exact copies are found by a 128-bit BLAKE2 digest of the text, not the
    text (a million texts are not held; two texts sharing a digest have odds of about
    1e-26 at a million). Unique texts go to `spill`, if given, for the embedding."""
    ids: list = []
    which, first, lengths = array("q"), array("q"), array("q")
    unique: dict[bytes, int] = {}
    seen: dict = {}
    sha1 = hashlib.sha1()
    for i, record in enumerate(iter_records(input_file)):
        if id_field is None:
            try:
                id_field = id_field_of(record)
            except InputError as e:
                raise InputError(f"{where(input_file, i)}: {e}") from None
        if id_field not in record:
            raise InputError(f"{where(input_file, i)}: field '{id_field}' is missing")
        value = record[id_field]
        if ids and json_type(value) != json_type(ids[0]):
            raise InputError(
                f"{where(input_file, i)}: {id_field} {value!r} is a "
                f"{json_type(value)} but earlier ids are {json_type(ids[0])}s; "
                "one id column holds one type"
            )
        # a string id is its own key (json.dumps is one-to-one on strings)
        key = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if key in seen:
            raise InputError(
                f"{where(input_file, i)}: {id_field} {value!r} repeats "
                f"{where(input_file, seen[key])}; ids must be unique"
            )
        seen[key] = i
        try:
            text = text_of(record, text_field)
        except KeyError:
            raise InputError(
                f"{where(input_file, i)}: field '{text_field}' is missing "
                "(and no conversations/conversation/messages to take it from)"
            ) from None
        except ConversationError as e:
            raise InputError(f"{where(input_file, i)}: {e}") from None
        ids.append(value)
        if text is None:
            which.append(-1)
            continue
        data = encode(text)
        u = unique.setdefault(hashlib.blake2b(data, digest_size=16).digest(), len(unique))
        if u == len(first):  # a new text
            first.append(i)
            lengths.append(len(text))
            sha1.update(data + b"\0")
            if spill is not None:
                spill.add(text)
        which.append(u)
    if not ids:
        raise InputError(f"{input_file}: no records")
    return Scan(
        ids,
        np.frombuffer(which, dtype=np.int64),
        id_field,
        np.frombuffer(first, dtype=np.int64),
        np.frombuffer(lengths, dtype=np.int64),
        sha1.hexdigest(),
    )


def texts_digest(texts: Iterable[str]) -> str:
    """SHA-1 of unique texts in order, as a saved index's description holds it (what
    scan_input computes as it reads)."""
    h = hashlib.sha1()
    for t in texts:
        h.update(encode(t) + b"\0")
    return h.hexdigest()


def write_annotated(
    input_file: str | os.PathLike,
    output: Path,
    ids: list,
    result: DistanceResult,
    id_field: str,
) -> None:
    """Every record of `input_file` (read again as a stream) with its near-duplicate
    fields, written atomically to `output` (an earlier run's `dedup_error` dropped)."""
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
