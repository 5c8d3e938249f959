"""gen_mt, gen_conv and gen_po_rewards on the Ray executor (a real local cluster on
127.0.0.1, two replicas, several chunks): the same records as the local executor.

As in test_ray.py, the local executor is the reference and the embedded model runs in
float32 (bfloat16 on CPU is not batch-invariant). A dialogue's turn at step s has the
seed of "<stage>/<s>" and its index, so a chunk of two dialogues on a replica makes
the turns that one call over all dialogues makes here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_reward

from magpie.conversation import Turn
from magpie.engines import EngineOptions
from magpie.models import DEFAULT_MODEL
from magpie.multiturn import ConversationJob, MultiTurnJob
from magpie.preference import RewardJob, load_scorer
from magpie.profiles import get_profile
from magpie.records import read_records
from magpie.stages.gen_po_rewards import GenPoRewards
from magpie.turns import MULTI_TURN_SYSTEM_PROMPT

pytestmark = pytest.mark.slow

SAMPLING = {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1}
LOCAL = EngineOptions(dtype="float32")
RAY = EngineOptions(dtype="float32", executor="ray", num_replicas=2)
SEEDS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Give me a tip for learning to cook.", "Start with simple recipes and practise."),
    ("How do plants make food?", "Plants make food by photosynthesis, using sunlight."),
    ("What is 2 + 2?", "2 + 2 = 4."),
    ("Name a primary colour.", "Red is a primary colour."),
    ("", None),  # not usable: left as it came, never sent to a replica
]


@pytest.fixture(scope="module")
def smol_profile(smol_tokenizer):
    return get_profile(DEFAULT_MODEL, smol_tokenizer)


def mt_job(profile, tokenizer, src: Path, out: Path) -> MultiTurnJob:
    return MultiTurnJob(
        profile,
        tokenizer,
        src,
        out,
        model_name=DEFAULT_MODEL,
        num_turns=2,
        instruction_params=SAMPLING,
        response_params=SAMPLING,
        max_tokens=32,
        seed=5,
    )


class WatchedConversations(ConversationJob):
    """gen_conv keeping the conversations it grew, failed last turns aside (a record keeps
    only complete exchanges: with small max_tokens most would show nothing)."""

    def finish(self, summary):
        self.convs, _ = self.grown()
        return super().finish(summary)


def conv_job(profile, tokenizer, out: Path, kind=ConversationJob) -> ConversationJob:
    return kind(
        profile,
        tokenizer,
        out,
        model_name=DEFAULT_MODEL,
        total=5,
        n_turns=2,
        include_system_prompt=True,
        instruction_params=SAMPLING,
        response_params=SAMPLING,
        max_tokens=32,
        seed=11,
    )


def test_gen_mt_on_two_replicas_equals_local(
    ray_cluster, smol_profile, smol_tokenizer, tmp_path, monkeypatch, capsys
):
    src = tmp_path / "x_res.json"
    records = [{"id": i, "instruction": q, "response": a} for i, (q, a) in enumerate(SEEDS)]
    src.write_text(json.dumps(records))
    local_out, ray_out = tmp_path / "local_mt.json", tmp_path / "ray_mt.json"
    LOCAL.run(mt_job(smol_profile, smol_tokenizer, src, local_out), "", seed=5)
    monkeypatch.setenv("MAGPIE_RAY_CHUNK_SIZE", "2")  # 5 dialogues: 3 chunks
    job = mt_job(smol_profile, smol_tokenizer, src, ray_out)
    summary = RAY.run(job, "", tokenizer=smol_tokenizer, seed=5)
    rates = capsys.readouterr().out
    assert "r0 " in rates and "r1 " in rates and summary.records_out == 6
    local = read_records(local_out)
    assert read_records(ray_out) == local
    # Two turns where both answers fit in max_tokens; a conversation whose answer is cut
    # ends there and keeps its one complete exchange.
    complete = [r for r in local[:5] if r["conversation_stop_reason"] is None]
    assert len(complete) >= 2
    for r in complete:
        assert [m["role"] for m in r["conversation"]] == ["user", "assistant"] * 2
        assert all(m["content"] for m in r["conversation"])
        assert r["instruction_2"] == r["conversation"][2]["content"]
    assert len({r["instruction_2"] for r in complete}) == len(complete)
    for r in local[:5]:
        assert r["gen_mt_configs"]["engine"] == "hf"
        if r["conversation_stop_reason"] is not None:
            assert r["conversation_stop_reason"].startswith(("instruction 2", "response 2"))
            assert [m["content"] for m in r["conversation"]] == [r["instruction"], r["response"]]
    assert local[5]["conversation_stop_reason"].startswith("input has no usable")


def test_gen_conv_on_two_replicas_equals_local(
    ray_cluster, smol_profile, smol_tokenizer, tmp_path, monkeypatch, capsys
):
    local_out, ray_out = tmp_path / "local_conv.json", tmp_path / "ray_conv.json"
    local_job = conv_job(smol_profile, smol_tokenizer, local_out, WatchedConversations)
    LOCAL.run(local_job, "", seed=11)
    monkeypatch.setenv("MAGPIE_RAY_CHUNK_SIZE", "2")  # 5 dialogues: 3 chunks
    RAY.run(conv_job(smol_profile, smol_tokenizer, ray_out), "", tokenizer=smol_tokenizer, seed=11)
    rates = capsys.readouterr().out
    assert "r0 " in rates and "r1 " in rates
    local = read_records(local_out)
    assert read_records(ray_out) == local
    assert [r["id"] for r in local] == list(range(5))
    # Each dialogue has the turns its stop reason says: all four, or those before the
    # turn that failed ("response 1 unfinished": the first question only).
    for r, d in zip(local, local_job.convs, strict=True):
        assert r["gen_input_configs"]["engine"] == "hf"
        assert d.turns[0] == Turn("system", MULTI_TURN_SYSTEM_PROMPT)
        reason = r["conversation_stop_reason"]
        if reason is None:
            expected = 4
        else:
            role, turn, _ = reason.split()
            expected = 2 * int(turn) - (2 if role == "instruction" else 1)
        assert [t.role for t in d.chat] == ["user", "assistant", "user", "assistant"][:expected]
        assert all(t.text for t in d.chat)
    firsts = [d.chat[0].text for d in local_job.convs if d.chat]
    assert len(firsts) >= 3 and len(set(firsts)) == len(firsts)  # real, varied questions


def test_gen_po_rewards_on_two_replicas_equals_local(
    ray_cluster, smol_tokenizer, tmp_path, monkeypatch, capsys
):
    model = str(tiny_reward(tmp_path / "rm", smol_tokenizer))
    records = [
        {"instruction": f"Question {k}?", "responses": [f"Answer {k}.", "No.", f"{k} " * k]}
        for k in range(1, 7)
    ]
    records.insert(2, {"instruction": "", "responses": None, "response_flag": "skipped"})
    src = tmp_path / "x_3res.json"
    src.write_text(json.dumps(records))
    local_out, ray_out = tmp_path / "local_rm.json", tmp_path / "ray_rm.json"
    local = RewardJob(src, local_out, reward_model=model, dtype="float32")
    local.run(load_scorer(model, dtype="float32", batch_size=4))
    monkeypatch.setenv("MAGPIE_RAY_CHUNK_SIZE", "2")  # 7 records: 4 chunks
    GenPoRewards(
        input_file=str(src),
        reward_model_path=model,
        dtype="float32",
        batch_size=4,
        output_file=str(ray_out),
        executor="ray",
        num_replicas=2,
    ).run()
    rates = capsys.readouterr().out
    assert "r0 " in rates and "r1 " in rates and "records in 7, out 7" in rates
    scored, expected = read_records(ray_out), read_records(local_out)
    scores = [[s["score"] for s in r["rewards"] or ()] for r in scored]
    expected_scores = [[s["score"] for s in r["rewards"] or ()] for r in expected]
    # Other batches (a chunk is sorted by length on its own): the same to float32 noise.
    assert scores == [pytest.approx(s, abs=1e-5) for s in expected_scores]
    assert [{**r, "rewards": None} for r in scored] == [{**r, "rewards": None} for r in expected]
    assert expected[2]["rewards_flag"] == "skipped" and expected[2]["rewards"] is None
    assert sum(map(bool, expected_scores)) == 6  # all but the skipped record are scored
    assert all(len(s) == 3 and len(set(s)) == 3 for s in expected_scores if s)
