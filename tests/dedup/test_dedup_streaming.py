"""gen_dis at scale: the search on precomputed vectors against a brute-force reference,
the input streamed (never read whole), the texts embedded a segment at a time."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

import magpie.records
from magpie.dedup import run_distance_on_vectors
from magpie.embeddings import embed_planned, embed_texts
from magpie.executor import LocalExecutor
from magpie.records import InputError


def _records_and_vectors(n: int = 300, seed: int = 0):
    """n records: groups of near-duplicate vectors, exact copies of a text (same vector),
    records without text; ids 'r_<i>' written in shuffled order (so the representative,
    the naturally smallest id, is not simply the first row)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 24)).astype(np.float32)
    for g in range(20):  # 20 groups of 4 close vectors
        base = 100 + 4 * g
        x[base + 1 : base + 4] = x[base] + 0.03 * rng.normal(size=(3, 24))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    texts = [f"text {i}" for i in range(n)]
    for i in range(200, 230):  # exact copies of an earlier record's text and vector
        texts[i], x[i] = texts[i - 150], x[i - 150]
    for i in range(250, 262):
        texts[i] = "   "  # no text: its vector is ignored
    numbers = rng.permutation(n)
    ids = [f"r_{k}" for k in numbers]
    records = [{"id": ids[i], "instruction": texts[i], "extra": i} for i in range(n)]
    return records, x, texts, ids


def _reference(x: np.ndarray, texts: list[str], ids: list[str], threshold: float):
    """Brute force in float64: distance to the nearest other record with text, records
    within the threshold, the naturally smallest id among a record and those."""
    n = len(texts)
    has = np.array([bool(t.strip()) for t in texts])
    d = 2 - 2 * x.astype(np.float64) @ x.T.astype(np.float64)
    d = np.maximum(d, 0)
    same = np.array([[has[i] and texts[i] == texts[j] for j in range(n)] for i in range(n)])
    d[same] = 0.0  # exact copies are copies, whatever float rounding says
    d[:, ~has] = np.inf
    np.fill_diagonal(d, np.inf)

    def natural(s: str):
        return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s) if p]

    out = []
    for i in range(n):
        if not has[i]:
            out.append((None, 0, None))
            continue
        near = np.flatnonzero(d[i] < threshold)
        rep = min([ids[i]] + [ids[j] for j in near], key=natural) if len(near) else None
        nearest = d[i].min()
        out.append((None if np.isinf(nearest) else float(nearest), len(near), rep))
    return out


@pytest.mark.parametrize("as_file", [False, True])
@pytest.mark.parametrize("method", ["exact", "approximate"])
def test_precomputed_vectors_match_brute_force(tmp_path, monkeypatch, as_file, method):
    def no_whole_reads(*a, **k):
        raise AssertionError("gen_dis must stream its input, not read it whole")

    monkeypatch.setattr(magpie.records, "read_records", no_whole_reads)
    records, x, texts, ids = _records_and_vectors()
    src = tmp_path / "in.json"
    src.write_text(json.dumps(records))
    vectors = x
    if as_file:
        vectors = tmp_path / "vectors.npy"
        np.save(vectors, x)
    out = tmp_path / "out.jsonl"
    timings = run_distance_on_vectors(
        src, vectors, out, threshold=0.05, method=method, progress=False
    )
    assert timings["method"] == method and timings["n_unique"] == 300 - 30 - 12
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # every record, in order, with its own fields first
    assert [{k: r[k] for k in ("id", "instruction", "extra")} for r in rows] == records
    want = _reference(x, texts, ids, 0.05)
    got = [(r["min_neighbor_distance"], r["repeat_count"], r["min_similar_id"]) for r in rows]
    assert [g[1:] for g in got] == [w[1:] for w in want]
    for (gd, _, _), (wd, _, _) in zip(got, want, strict=True):
        assert (gd is None) == (wd is None)
        if gd is not None:
            assert gd == pytest.approx(wd, abs=1e-5)
    assert sum(w[1] > 0 for w in want) >= 80 + 60  # the groups and the copies were found


def test_precomputed_vectors_need_one_row_per_record(tmp_path):
    records, x, _, _ = _records_and_vectors()
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(InputError, match="300 records but vectors of shape"):
        run_distance_on_vectors(src, x[:299], tmp_path / "o.jsonl", progress=False)
    assert not (tmp_path / "o.jsonl").exists()


class _CallModel:
    """A stand-in sentence model whose vectors show which encode call made them: row =
    (call size, longest text in the call, the text's own length, 1), unit length. Equal
    vectors mean the same texts went to the same calls."""

    device = "cpu"

    def __init__(self):
        self.calls = 0

    def encode(self, texts, batch_size, **kwargs):
        self.calls += 1
        longest = max(map(len, texts))
        v = np.array([[len(texts), longest, len(t), 1.0] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def get_embedding_dimension(self):
        return 4


def test_texts_are_embedded_a_segment_at_a_time_with_the_same_calls():
    rng = np.random.default_rng(1)
    texts = ["w" * int(k) for k in rng.integers(1, 400, size=3000)]
    model = _CallModel()
    whole = embed_texts(model, texts, batch_size=16, progress=False)
    asked = []

    def texts_of(rows):
        asked.append(len(rows))
        return [texts[i] for i in rows]

    lengths = np.array([len(t) for t in texts])
    for segment in (200, 1 << 20):
        asked.clear()
        got = embed_planned(
            LocalExecutor(), lambda: model, lengths, texts_of, 16, 512, segment=segment
        )
        np.testing.assert_array_equal(got, whole)
        assert sum(asked) == len(texts)
        if segment == 200:  # a segment is whole encode calls of at most 128 texts here
            assert len(asked) > 10 and max(asked) <= 200
        else:
            assert asked == [len(texts)]


def test_scan_holds_ids_and_hashes_not_texts(tmp_path):
    from magpie.dedup.records import scan_input, texts_digest
    from magpie.records import Spool

    lines = [
        {"conversation_id": "c_2", "instruction": " Héllo ✓ "},
        {"conversation_id": "c_1", "instruction": "World"},
        {"conversation_id": "c_3", "instruction": "Héllo ✓"},
        {"conversation_id": "c_4", "instruction": ""},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in lines))
    spill = Spool(tmp_path)
    try:
        scan = scan_input(src, spill=spill)
        assert scan.ids == ["c_2", "c_1", "c_3", "c_4"] and scan.id_field == "conversation_id"
        assert scan.which.tolist() == [0, 1, 0, -1]
        assert scan.first.tolist() == [0, 1] and scan.lengths.tolist() == [7, 5]
        assert list(spill.read([1, 0, 1])) == ["World", "Héllo ✓", "World"]
        # what a saved index's description holds: SHA-1 of the unique texts, 0-separated
        want = hashlib.sha1("Héllo ✓\0World\0".encode()).hexdigest()
        assert scan.texts_sha1 == want == texts_digest(["Héllo ✓", "World"])
    finally:
        spill.close()
    assert list(tmp_path.iterdir()) == [src]  # the spill file was never named


def test_bad_id_on_a_later_line_is_named(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": f"a_{i % 7 if i == 9 else i}", "instruction": "x"}) + "\n"
            for i in range(10)
        )
    )
    with pytest.raises(InputError, match=r"in\.jsonl:10: id 'a_2' repeats .*in\.jsonl:3; ids"):
        run_distance_on_vectors(src, np.eye(10, 4, dtype=np.float32), progress=False)
    assert not Path(tmp_path / "in_distance.jsonl").exists()
