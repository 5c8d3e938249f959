"""Near-duplicate detection: the real embedded sentence model on known near-duplicates,
order independence, exact vs approximate search, the original's defects, the CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from magpie.dedup import run_distance
from magpie.dedup.records import NON_FINITE, annotate, natural_key
from magpie.dedup.search import _exact_torch, approximate_neighbours, exact_neighbours
from magpie.records import InputError

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

# Groups of near-duplicates (exact copies, case, punctuation, light rewording); distances
# with all-MiniLM-L6-v2 are all below 0.02, and every text is > 0.15 from other groups.
GROUPS = [
    [
        "Write a Python function to reverse a linked list.",
        "Write a Python function to reverse a linked list.",
        "write a python function to reverse a linked list",
        "WRITE A PYTHON FUNCTION TO REVERSE A LINKED LIST.",
    ],
    [
        "Can you explain how photosynthesis works?",
        "Could you explain how photosynthesis works?",
    ],
    ["Give me three tips for better sleep.", "Give me 3 tips for better sleep."],
    ["How do I bake sourdough bread at home?", "How can I bake sourdough bread at home?"],
    ["What is the capital of France?", "What's the capital of France?"],
]
UNIQUE = [
    "Write a Java function to reverse a linked list.",
    "What is the capital of Germany?",
    "Write a haiku about autumn leaves.",
    "Write a haiku about spring flowers.",
    "Solve for x: 3x + 5 = 20.",
    "Plan a five-day trip to Iceland on a budget.",
    "What are the pros and cons of nuclear energy?",
    "Summarize the causes of the French Revolution.",
]


@pytest.fixture(scope="module")
def model():
    from magpie.embeddings import load_sentence_model

    return load_sentence_model()


@pytest.fixture(scope="module")
def known(model, tmp_path_factory) -> tuple[Path, dict]:
    """A shuffled file of the groups and unique texts; expected group of each id."""
    rows = [(t, g) for g, texts in enumerate(GROUPS) for t in texts]
    rows += [(t, None) for t in UNIQUE]
    random.Random(3).shuffle(rows)
    path = tmp_path_factory.mktemp("known") / "known_sharegpt.jsonl"
    expected = {}
    with open(path, "w") as f:
        for i, (text, group) in enumerate(rows):
            cid = f"magpie_{i}"
            f.write(json.dumps({"conversation_id": cid, "instruction": text}) + "\n")
            expected[cid] = group
    return path, expected


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_known_near_duplicates_found_and_unique_texts_left_alone(known, tmp_path):
    path, expected = known
    out = tmp_path / "out.jsonl"
    run_distance(path, out, progress=False)
    rows = _read(out)
    assert [r["conversation_id"] for r in rows] == list(expected)  # order and fields kept
    members: dict = {}
    for cid, g in expected.items():
        members.setdefault(g, []).append(cid)
    for r in rows:
        g = expected[r["conversation_id"]]
        if g is None:
            assert r["repeat_count"] == 0
            assert r["min_similar_conversation_id"] is None
            assert r["min_neighbor_distance"] > 0.1
        else:
            group = members[g]
            assert r["repeat_count"] == len(group) - 1, r
            assert r["min_similar_conversation_id"] == min(group, key=natural_key)
            assert r["min_neighbor_distance"] < 0.05
    copies = [r for r in rows if r["instruction"] == GROUPS[0][0]]
    assert [r["min_neighbor_distance"] for r in copies] == [0.0, 0.0]


def test_original_misspelt_flag_rerun_overwrites_and_uuid(known, tmp_path):
    from magpie.stages.gen_dis import GenDis

    path, expected = known
    out = tmp_path / "d.jsonl"
    for _ in range(2):  # a rerun replaces, never appends
        GenDis(input_file=str(path), output_file=str(out), distance_distance_threshold=1e-9).run()
    rows = _read(out)
    assert len(rows) == len(expected)
    # with a tiny threshold only copies (distance 0; the model is uncased) remain
    for r in rows:
        same = r["instruction"] == GROUPS[0][0]
        assert (r["repeat_count"] > 0) == same or r["instruction"] == GROUPS[0][3], r

    uuid_file = tmp_path / "u.jsonl"
    uuid_file.write_text(
        "".join(
            json.dumps({"uuid": f"u-{i}", "instruction": r["instruction"]}) + "\n"
            for i, r in enumerate(rows)
        )
    )
    run_distance(uuid_file, tmp_path / "u_out.jsonl", progress=False)
    urows = _read(tmp_path / "u_out.jsonl")
    assert "min_similar_uuid" in urows[0] and "min_similar_conversation_id" not in urows[0]


def _texts_and_vectors(model, n: int = 500):
    from bench_dedup import make_instructions

    from magpie.embeddings import embed_texts

    texts = make_instructions(n, seed=11, dup_rate=0.15)
    unique = list(dict.fromkeys(texts))
    vectors = embed_texts(model, unique, progress=False)
    return texts, dict(zip(unique, vectors, strict=True))


@pytest.fixture(scope="module")
def real(model):
    return _texts_and_vectors(model)


def _lookup(table):
    return lambda unique: np.stack([table[t] for t in unique])


def test_order_independence(real):
    texts, table = real
    ids = [f"magpie_{i}" for i in range(len(texts))]
    first, _, _ = annotate(ids, texts, _lookup(table), method="exact", progress=False)
    order = list(range(len(texts)))
    random.Random(5).shuffle(order)
    second, _, _ = annotate(
        [ids[i] for i in order],
        [texts[i] for i in order],
        _lookup(table),
        method="exact",
        progress=False,
    )
    by_id = {}
    for j, i in enumerate(order):
        rep = second.representative[j]
        by_id[ids[i]] = (second.repeat_count[j], None if rep is None else ids[order[rep]])
    for i, cid in enumerate(ids):
        rep = first.representative[i]
        assert by_id[cid] == (first.repeat_count[i], None if rep is None else ids[rep])
    survivors = {ids[i] for i, r in enumerate(first.representative) if r in (None, i)}
    shuffled = {ids[order[j]] for j, r in enumerate(second.representative) if r in (None, j)}
    assert survivors == shuffled
    assert sum(c > 0 for c in first.repeat_count) > 50  # the fixture has near-duplicates


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_exact_and_approximate_agree_on_real_embeddings(real, index_type):
    texts, table = real
    ids = list(range(len(texts)))
    exact, _, _ = annotate(ids, texts, _lookup(table), method="exact", progress=False)
    approx, index, _ = annotate(
        ids, texts, _lookup(table), method="approximate", index_type=index_type, k=2, progress=False
    )
    assert index is not None
    assert approx.repeat_count == exact.repeat_count
    assert approx.representative == exact.representative
    close = np.isclose(
        np.array(approx.min_neighbor_distance, dtype=float),
        np.array(exact.min_neighbor_distance, dtype=float),
        atol=1e-5,
    )
    assert close.mean() > 0.95


@pytest.mark.parametrize("path", ["bf16", "float32", "torch"])
def test_exact_matches_brute_force_and_counts_are_not_capped(path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(700, 32)).astype(np.float32)
    x[600:] = x[0] + 0.01 * rng.normal(size=(100, 32))  # 101 near copies of row 0
    x[550:560] = x[1]  # 11 exact copies of row 1
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w, r = np.ones(700, dtype=np.int64), np.arange(700)
    if path == "torch":  # the GPU code, run on the CPU
        found = _exact_torch(x, w, r, 0.05, "cpu", 64, False)
    else:
        found = exact_neighbours(x, w, r, 0.05, block=64, bf16=path == "bf16", progress=False)
    d = 2 - 2 * x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(found.min_distance, np.maximum(d.min(axis=1), 0), atol=1e-5)
    np.testing.assert_array_equal(found.count, (d < 0.05).sum(axis=1))
    assert found.count[0] == 100 and found.count[1] == 10
    approx, _ = approximate_neighbours(x, w, r, 0.05, k=4, progress=False)
    np.testing.assert_array_equal(approx.count, found.count)  # k=4 grew to fit 100
    assert approx.stats["deepened"] > 0


def test_exact_copies_are_one_embedding_and_exclude_only_themselves():
    embedded = []

    def vectors_of(unique):
        embedded.append(list(unique))
        return np.eye(len(unique), 8, dtype=np.float32)

    texts = ["a"] * 600 + ["b", None, " b "]
    ids = [f"x_{i}" for i in range(603)]
    res, _, _ = annotate(ids, texts, vectors_of, progress=False)
    assert embedded == [["a", "b"]]
    assert res.repeat_count[:3] == [599, 599, 599]  # not capped by any k
    assert res.min_neighbor_distance[0] == 0.0
    assert {res.representative[i] for i in range(600)} == {0}
    assert res.repeat_count[600] == 1 and res.representative[600] == 600
    assert res.min_neighbor_distance[600] == 0.0
    assert (res.repeat_count[601], res.representative[601], res.min_neighbor_distance[601]) == (
        0,
        None,
        None,
    )


def test_fewer_than_two_records(tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"id": 7, "instruction": "Hello there"}) + "\n")
    run_distance(one, tmp_path / "o.jsonl", progress=False)
    (row,) = _read(tmp_path / "o.jsonl")
    assert row["min_neighbor_distance"] is None
    assert row["repeat_count"] == 0
    assert row["min_similar_id"] is None


def test_natural_order_of_ids():
    ids = ["m_10", "m_2", "m_1", "z", "m_2a"]
    assert sorted(ids, key=natural_key) == ["m_1", "m_2", "m_2a", "m_10", "z"]
    assert sorted([10, 2, 33], key=natural_key) == [2, 10, 33]


def test_dtype_auto_follows_the_hardware_and_bf16_keeps_the_pairs():
    from magpie.dtypes import native_bf16, resolve_dtype
    from magpie.embeddings import embed_texts, load_sentence_model

    assert resolve_dtype("auto", "cpu") == ("bfloat16" if native_bf16("cpu") else "float32")
    assert resolve_dtype(None, "cpu") == resolve_dtype("auto", "cpu")
    assert resolve_dtype("float32", "cpu") == "float32"
    with pytest.raises(InputError, match="unknown dtype 'int4'"):
        resolve_dtype("int4", "cpu")

    texts = list(dict.fromkeys([t for g in GROUPS for t in g] + UNIQUE))
    vectors = {
        dtype: embed_texts(load_sentence_model(None, "cpu", dtype), texts, progress=False)
        for dtype in ("float32", "bfloat16")
    }
    a, b = (2 - 2 * v @ v.T for v in vectors.values())
    assert np.abs(a - b).max() < 0.01
    near = {dtype: (d < 0.05) for dtype, d in zip(vectors, (a, b), strict=True)}
    assert near["float32"].sum() > len(texts)  # there are pairs besides the diagonal
    assert (near["float32"] == near["bfloat16"]).all()


def test_index_saved_and_reused(known, tmp_path, monkeypatch):
    path, _ = known
    out = tmp_path / "a.jsonl"
    run_distance(path, out, save_faiss_index=True, progress=False)
    index_file = out.with_suffix(".faiss")
    assert index_file.exists() and Path(f"{index_file}.json").exists()

    import magpie.embeddings

    def no_model(*a, **k):
        raise AssertionError("the saved index should make embedding unnecessary")

    monkeypatch.setattr(magpie.embeddings, "load_sentence_model", no_model)
    again = tmp_path / "b.jsonl"
    run_distance(path, again, faiss_index=index_file, progress=False)
    assert _read(again) == _read(out)

    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": 1, "instruction": "something else"}) + "\n")
    with pytest.raises(InputError, match="built from other data"):
        run_distance(other, tmp_path / "c.jsonl", faiss_index=index_file, progress=False)


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"conversation_id": "a", "instruction": "x"}', "{oops"], r":2: malformed JSON"),
        (['{"instruction": "x"}'], r":1: records need an id"),
        (['{"id": 1, "instruction": "x"}', '{"id": 1, "instruction": "y"}'], r":2: id 1 repeats"),
        (['{"id": 1, "response": "x"}'], r":1: field 'instruction' is missing"),
        (['{"id": 1, "instruction": "x"}', '{"instruction": "y"}'], r":2: field 'id' is missing"),
    ],
)
def test_bad_input_named_and_nothing_written(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    with pytest.raises(InputError, match=message):
        run_distance(path, out, progress=False)
    assert not out.exists()


def test_cli_bad_input_exits_nonzero(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "exp" / "gen_dis.py"),
            "--input_file",
            str(tmp_path / "none.jsonl"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "none.jsonl: file not found" in proc.stderr


# ------------------------------------------------------------------ non-finite embeddings


def _pairs_with_one_nan(seed: int = 0):
    """1,500 unit vectors, 600 of them in 300 near-duplicate pairs (rows 2i, 2i+1 for
    i < 300; distance about 0.004) and 900 far from everything; plus the same set with a
    NaN row inserted at position 700, in the middle of the blocks."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1500, 48)).astype(np.float32)
    x[1:600:2] = x[0:600:2] + 0.05 * rng.normal(size=(300, 48)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with_nan = np.insert(x, 700, np.nan, axis=0)
    return x, with_nan


def _keep_all_but(found, row):
    keep = np.ones(len(found.count), dtype=bool)
    keep[row] = False
    return found.min_distance[keep], found.count[keep], found.rep_rank[keep]


@pytest.mark.parametrize("path", ["float32", "bf16", "torch", "ivf", "hnsw", "flat"])
def test_one_nan_embedding_changes_no_other_record(path):
    # Issue 13: one NaN vector among 1,500 made exact search find 190 records with a
    # near-duplicate instead of 600 (it poisoned the maxima of its block); FAISS raised.
    clean, poisoned = _pairs_with_one_nan()
    found = {}
    for name, x in (("clean", clean), ("poisoned", poisoned)):
        n = len(x)
        w, r = np.ones(n, dtype=np.int64), np.arange(n)
        if path == "torch":  # the GPU code, run on the CPU
            found[name] = _exact_torch(x, w, r, 0.05, "cpu", 256, False)
        elif path in ("float32", "bf16"):
            found[name] = exact_neighbours(
                x, w, r, 0.05, block=256, bf16=path == "bf16", progress=False
            )
        else:
            found[name], _ = approximate_neighbours(
                x, w, r, 0.05, index_type=path, k=4, nprobe=64, progress=False
            )
    clean_found, bad = found["clean"], found["poisoned"]
    # What is true of the constructed set: 600 records with exactly one near-duplicate.
    assert (clean_found.count == 1).sum() == 600 and (clean_found.count == 0).sum() == 900
    assert (bad.count == 1).sum() == 600
    # The NaN record: no distance, no neighbours, no representative.
    assert np.isnan(bad.min_distance[700]) and bad.count[700] == 0
    assert bad.rep_rank[700] == np.iinfo(np.int64).max
    # Every other record exactly as without it (ranks shift by one past the NaN row).
    md, count, rep = _keep_all_but(bad, 700)
    np.testing.assert_array_equal(count, clean_found.count)
    np.testing.assert_allclose(md, clean_found.min_distance, atol=1e-6)
    has = count > 0
    shifted = np.where(rep[has] > 700, rep[has] - 1, rep[has])
    np.testing.assert_array_equal(shifted, clean_found.rep_rank[has])


def test_nan_record_is_marked_and_the_others_keep_their_duplicates(tmp_path, monkeypatch):
    """The stage end to end: 12 records, one text's embedding NaN even in float32."""
    texts = [f"record number {i}" for i in range(10)] + ["record number 3", "bad one"]
    ids = [f"r_{i}" for i in range(12)]

    def vectors_of(unique):
        v = np.eye(len(unique), 16, dtype=np.float32)
        v[unique.index("bad one")] = np.nan
        return v

    res, _, _ = annotate(ids, texts, vectors_of, method="exact", device="cpu", progress=False)
    assert res.errors[11] == NON_FINITE and res.errors[:11] == [None] * 11
    assert (res.min_neighbor_distance[11], res.repeat_count[11], res.representative[11]) == (
        None,
        0,
        None,
    )
    assert res.repeat_count[3] == res.repeat_count[10] == 1  # the exact copy still found
    assert res.representative[10] == 3
    assert res.min_neighbor_distance[0] == pytest.approx(2.0)  # orthogonal, not NaN

    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": i, "instruction": t}) + "\n" for i, t in zip(ids, texts, strict=True)
        )
    )
    import magpie.embeddings

    unique = list(dict.fromkeys(texts))

    class Model:  # the sentence model, as the embedding step calls it
        device = "cpu"

        def encode(self, batch, **kwargs):
            return vectors_of(unique)[[unique.index(t) for t in batch]]

    monkeypatch.setattr(magpie.embeddings, "load_sentence_model", lambda *a, **k: Model())
    run_distance(
        src, tmp_path / "out.jsonl", method="approximate", index_type="flat", progress=False
    )
    rows = _read(tmp_path / "out.jsonl")
    assert rows[11]["dedup_error"] == NON_FINITE and rows[11]["min_neighbor_distance"] is None
    assert all("dedup_error" not in row for row in rows[:11])
    assert rows[10]["min_similar_id"] == "r_3"


class _NanInBf16:
    """The real sentence model whose bf16 output is NaN for texts containing "poison"
    (as BERT-type models give in bf16), and, with `always`, in float32 too."""

    def __init__(self, model, always: bool = False):
        self.model, self.always = model, always

    def __getattr__(self, name):
        return getattr(self.model, name)

    def encode(self, texts, **kwargs):
        import torch

        out = self.model.encode(texts, **kwargs)
        in_bf16 = next(self.model.parameters()).dtype == torch.bfloat16
        for i, t in enumerate(texts):
            if "poison" in t and (in_bf16 or self.always):
                out[i] = np.nan
        return out


def test_non_finite_bf16_embeddings_are_recomputed_in_float32():
    import torch

    from magpie.embeddings import embed_texts, load_sentence_model

    texts = ["Write a haiku about autumn.", "A poison dart frog fact, please.", "Hi there"]
    bf16 = load_sentence_model(None, "cpu", "bfloat16")
    float32 = load_sentence_model(None, "cpu", "float32")
    reference = embed_texts(float32, texts, progress=False)
    # As the stage runs it: the float32 model is loaded for the bad rows.
    got = embed_texts(_NanInBf16(bf16), texts, progress=False, float32_model=lambda: float32)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[1], reference[1], atol=1e-6)  # the float32 embedding
    # The others stay bf16: exactly the bf16 model's vectors (same batch), not float32's.
    in_bf16 = embed_texts(bf16, texts, progress=False)
    np.testing.assert_array_equal(got[[0, 2]], in_bf16[[0, 2]])
    assert 0 < np.abs(got[[0, 2]] - reference[[0, 2]]).max() < 0.02
    # Without a float32 model the bf16 one computes in float32 for the call.
    upcast = embed_texts(_NanInBf16(bf16), texts, progress=False)
    assert np.isfinite(upcast).all() and np.abs(upcast[1] - reference[1]).max() < 0.02
    assert next(bf16.parameters()).dtype == torch.bfloat16  # the cached model put back
    still = embed_texts(_NanInBf16(bf16, always=True), texts, progress=False)
    assert np.isnan(still[1]).all() and np.isfinite(still[[0, 2]]).all()
