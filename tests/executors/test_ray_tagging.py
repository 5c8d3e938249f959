"""unitag and gen_dis on the Ray executor (a real local cluster, two replicas, several
chunks each): the same records as the local executor, which is the reference.

As in test_ray.py, the models run in float32: in bfloat16 the CPU kernels sum in an
order that depends on the batch's shape, and a chunk on a replica is not the local batch.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from magpie.dedup import run_distance
from magpie.dedup.search import load_index
from magpie.engines import EngineOptions
from magpie.records import read_records, write_records
from magpie.tagging import GROUPS
from magpie.tagging.job import TagOptions, run
from magpie.tagging.schemas import QUALITY, SCORES

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about rain.",
    "Compute 17 * 23.",
    "Explain photosynthesis to a child.",
    "Fix this code: print('a'",
    "Give me three name ideas for a bakery.",
    "If all cats are animals and Tom is a cat, is Tom an animal?",
]
RECORDS = [
    {"id": i, "instruction": q, "response": "Happy to help."} for i, q in enumerate(QUESTIONS)
]
RECORDS.append({"id": 7, "instruction": "", "response": None})  # nothing to judge


def approx_floats(record: dict) -> dict:
    """The record with its floats compared to 1e-3."""
    return {k: pytest.approx(v, abs=1e-3) if isinstance(v, float) else v for k, v in record.items()}


@contextmanager
def chunk_size(n: int):
    os.environ["MAGPIE_RAY_CHUNK_SIZE"] = str(n)
    try:
        yield
    finally:
        del os.environ["MAGPIE_RAY_CHUNK_SIZE"]


def tag(tmp: Path, **executor) -> list[list[dict]]:
    """quality then sample_quality (one run: one executor, the tagger loaded once for
    both; the missions the embedded tagger is trusted with, labels read from
    probabilities)."""
    src = tmp / "x.json"
    write_records(src, RECORDS)
    engine = EngineOptions(engine="hf", dtype="float32", **executor)
    files = run("qs", src, TagOptions(max_tokens=128, seed=0, engine_options=engine))
    assert [f.name for f in files] == ["x_quality.json", "x_quality_sample_quality.json"]
    return [read_records(f) for f in files]


def test_llm_missions_on_two_replicas_equal_local(ray_cluster, tmp_path, monkeypatch, capsys):
    import xgrammar  # noqa: F401  (a dependency: a broken install fails, never skips)

    monkeypatch.setitem(GROUPS, "qs", ("quality", "sample_quality"))
    local = tag(tmp_path / "local")
    (tmp_path / "ray").mkdir()
    with chunk_size(3):  # 8 records: 3 chunks per mission over 2 replicas
        ray = tag(tmp_path / "ray", executor="ray", num_replicas=2)
    out = capsys.readouterr().out
    assert "[unitag quality] ray replicas: r0" in out and "r1 " in out
    assert "[unitag sample_quality] ray replicas: r0" in out
    # Labels and texts exactly; the probabilities to 1e-3 (a chunk's batch is padded
    # otherwise than the local one, which moves float32 sums in the last places).
    assert [[approx_floats(r) for r in f] for f in ray] == [
        [approx_floats(r) for r in f] for f in local
    ]
    _, final = local
    for field, vocabulary in (("input_quality", QUALITY), ("sample_quality", SCORES)):
        labels = [r[field] for r in final[:7]]
        assert all(x in vocabulary for x in labels if x is not None)
        assert sum(x is not None for x in labels) >= 5
        for r in final[:7]:  # a missing label says why; a present one has its confidence
            assert r[field] is not None or r["tag_errors"]
            assert r[field] is None or 0 < r[f"{field}_confidence"] <= 1
    assert final[7]["tag_errors"]["quality"].startswith("no_text")
    assert final[7]["sample_quality"] is None


def test_gen_dis_embeddings_on_two_replicas_equal_local(ray_cluster, tmp_path, capsys):
    topics = ["rain", "the sea", "autumn", "a cat", "Paris", "chess", "bread", "the moon"]
    asks = ["Write a poem about {}.", "Write a short poem about {}!", "Tell me a fact about {}."]
    asks += ["Explain {} to a child.", "What is special about {}?", "Give three tips on {}."]
    texts = [a.format(t) for a in asks for t in topics] * 3  # exact copies too
    texts += [f"Question number {i}: what is {i} squared?" for i in range(200)]
    src = tmp_path / "x.jsonl"
    write_records(src, [{"id": i, "instruction": t} for i, t in enumerate(texts)])
    found = {}
    for name, executor in (("local", None), ("ray", EngineOptions(executor="ray", num_replicas=2))):
        runner = executor.make_executor() if executor else None
        out = tmp_path / f"{name}.jsonl"
        try:
            with chunk_size(1):  # 248 unique texts in calls of 64: 4 chunks over 2 replicas
                run_distance(
                    src, out, dtype="float32", batch_size=8, save_faiss_index=True, executor=runner
                )
        finally:
            if runner:
                runner.close()
        index = out.with_suffix(".faiss")
        _, vectors = load_index(index, json.loads(Path(f"{index}.json").read_text()))
        found[name] = (read_records(out), vectors)
    printed = capsys.readouterr().out
    assert "[embedding] ray replicas: r0" in printed and "r1 " in printed  # both made some
    (local, local_vectors), (ray, ray_vectors) = found["local"], found["ray"]
    assert local_vectors.shape == (248, 384) and np.array_equal(ray_vectors, local_vectors)
    assert ray == local
    assert sum(r["repeat_count"] > 0 for r in local) >= 3 * 48  # the copies, at least
    assert all(r["min_neighbor_distance"] is not None for r in local)
