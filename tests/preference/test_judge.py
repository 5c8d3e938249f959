"""The judge reward (issue 16): a chat model's expected 1-5 rating, read from its next-token
distribution, scores responses with no reward model to download.

Expected values are computed here from the model's own logits by a plain transformers
forward pass, one prompt at a time (no padding, no batching), over a prompt built here
from the chat template and the judge's rubric."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
from conftest import REPO
from judge_cases import GOOD_BAD, VARIED, judge_text, records_of

from magpie.engines.hf import HFEngine
from magpie.judge import (
    JudgeScorer,
    expected_rating,
    is_judge,
    judge_model_of,
    judge_name,
)
from magpie.models import DEFAULT_MODEL
from magpie.records import InputError, read_records
from magpie.stages.gen_po_rewards import GenPoRewards


@pytest.fixture(scope="module")
def direct(embedded_dir):
    """The embedded model and tokenizer, loaded by transformers (float32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_dir)
    model = AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.float32).eval()
    return model, tok


def direct_probs(direct, text: str, token_ids: list[int]) -> list[float]:
    """Next-token probabilities of `token_ids` after `text`: one unpadded forward pass."""
    import torch

    model, tok = direct
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].float()
    return logits.softmax(dim=-1)[token_ids].tolist()


def test_expected_rating_and_names():
    assert expected_rating([0, 0, 0, 0, 1]) == 5
    assert expected_rating([1, 0, 0, 0, 0]) == 1
    assert expected_rating([0.1, 0.1, 0.1, 0.1, 0.1]) == pytest.approx(3)
    assert expected_rating([0.02, 0, 0, 0.02, 0]) == pytest.approx(2.5)  # renormalised
    assert math.isnan(expected_rating([0, 0, 0, 0, 0]))
    assert math.isnan(expected_rating([math.nan, 0, 0, 0, 1]))
    assert is_judge("judge") and is_judge("judge:my/model")
    assert not is_judge("judgement-rm") and not is_judge("RLHFlow/ArmoRM-Llama3-8B-v0.1")
    assert judge_model_of("judge") == "" and judge_model_of("judge", "m") == "m"
    assert judge_model_of("judge:a/b") == "a/b" and judge_model_of("judge:a/b", "a/b") == "a/b"
    with pytest.raises(InputError, match="two judges"):
        judge_model_of("judge:a/b", "c/d")
    assert judge_name("") == f"judge:{DEFAULT_MODEL}"
    assert judge_name("/models/x") == "judge:/models/x"


def test_hf_next_token_probs_equal_one_prompt_at_a_time(direct, embedded_dir):
    """Batched, length-sorted and left-padded (three batches here) = unpadded, alone."""
    model, tok = direct
    engine = HFEngine("", model=model, tokenizer=tok, batch_size=3)
    texts = [
        "The capital of France is",
        "1, 2, 3,",
        tok.apply_chat_template(
            [{"role": "user", "content": "Count from one to five."}],
            tokenize=False,
            add_generation_prompt=True,
        ),
        "Once upon a time, in a small village by the sea, there lived an old fisherman who",
        "Q: What is 2 + 2?\nA:",
        "x",
        "The opposite of hot is",
    ]
    ids = [tok.convert_tokens_to_ids(str(k)) for k in range(10)] + [
        tok.convert_tokens_to_ids("ĠParis")
    ]
    got = engine.next_token_probs(texts, ids)
    assert len(got) == len(texts)
    for text, row in zip(texts, got, strict=True):
        assert row == pytest.approx(direct_probs(direct, text, ids), abs=2e-6, rel=1e-4)
    assert got[0][-1] > 0.1  # " Paris" after "The capital of France is": real logits
    # Token-id prompts are read as they are; an empty prompt gets NaNs, not an error.
    ((as_ids), (empty)) = engine.next_token_probs([tok.encode(texts[4]), []], ids)
    assert as_ids == pytest.approx(got[4], abs=1e-6)
    assert all(math.isnan(p) for p in empty)


def test_judge_scores_are_the_expected_rating_of_the_models_own_logits(direct, tmp_path):
    """The CLI with --reward_model judge on the embedded model, float32: every score is
    sum(k * p_k) of the renormalised next-token probabilities of "1".."5" after the
    judge's prompt, computed here; scores lie in [1, 5]; 20 varied answers do not tie."""
    src = tmp_path / "v_5res.json"
    src.write_text(json.dumps(records_of(VARIED)))
    GenPoRewards(input_file=str(src), reward_model="judge", dtype="float32", batch_size=4).run()
    out = read_records(tmp_path / "v_5res_armorm.json")
    _, tok = direct
    digits = [tok.convert_tokens_to_ids(str(k)) for k in range(1, 6)]
    assert len(set(digits)) == 5
    all_scores = []
    for record in out:
        assert record["rewards_model"] == f"judge:{DEFAULT_MODEL}"
        assert "rewards_armorm" not in record and record["rewards_truncated"] is False
        scores = [s["score"] for s in record["rewards"]]
        assert all(1 <= s <= 5 for s in scores)
        all_scores += scores
    for record in out[:3]:
        for response, got in zip(record["responses"], record["rewards"], strict=True):
            p = direct_probs(direct, judge_text(tok, record["instruction"], response), digits)
            assert sum(p) > 0.5  # the judge answers the rubric with a digit
            want = sum(k * pk for k, pk in zip(range(1, 6), p, strict=True)) / sum(p)
            assert got["score"] == pytest.approx(want, abs=1e-4)
    assert len(set(all_scores)) == len(all_scores)  # no two of the 20 tie
    assert max(all_scores) - min(all_scores) > 0.1


def test_judge_in_bfloat16_rarely_ties(tmp_path):
    """The CLI's default dtype (bfloat16): within each record the five scores differ."""
    src = tmp_path / "v_5res.json"
    src.write_text(json.dumps(records_of(VARIED)))
    GenPoRewards(input_file=str(src), reward_model_path="judge").run()
    out = read_records(tmp_path / "v_5res_armorm.json")
    assert len(out) == len(records_of(VARIED))  # every record scored, none left out
    ties = 0
    for record in out:
        scores = [s["score"] for s in record["rewards"]]
        assert all(1 <= s <= 5 for s in scores)
        ties += len(scores) - len(set(scores))
    assert ties <= 1


def test_judge_prefers_clearly_good_answers_on_most_pairs(direct):
    """What a 135M judge can do: a right, on-topic answer scores above an off-topic or
    empty-ish one on most hand-written pairs (measured: 9 of 10; the margins are small,
    a few tenths of a rating at most)."""
    model, tok = direct
    judge = JudgeScorer(HFEngine("", model=model, tokenizer=tok, batch_size=8), "")
    from magpie.conversation import Conversation

    encoded = []
    for q, good, bad in GOOD_BAD:
        for answer in (good, bad):
            encoded.append(judge.fit(Conversation([("user", q), ("assistant", answer)]))[0])
    scores = dict(judge.scores(encoded))
    wins = sum(scores[2 * k] > scores[2 * k + 1] for k in range(len(GOOD_BAD)))
    assert wins >= 8, [(scores[2 * k], scores[2 * k + 1]) for k in range(len(GOOD_BAD))]


def test_cli_names_the_judge_and_refuses_mixed_flags(tmp_path, tiny_model_dir, capsys):
    """--judge_model_path alone asks for the judge; records and the journal name it, a
    rerun finds the output complete, another judge is refused without --overwrite."""
    src = tmp_path / "x_2res.json"
    src.write_text(json.dumps(records_of(VARIED[:2])))
    out = tmp_path / "x_2res_armorm.json"
    args = dict(input_file=str(src), judge_model_path=str(tiny_model_dir), dtype="float32")
    GenPoRewards(**args).run()
    first = read_records(out)
    assert len(first) == 2  # both records scored: the checks below run
    for record in first:
        assert record["rewards_model"] == f"judge:{tiny_model_dir}"
        # A random 2-layer model: the ratings' probabilities are arbitrary, the expected
        # rating is still one, strictly inside [1, 5].
        assert all(1 < s["score"] < 5 for s in record["rewards"])
    capsys.readouterr()
    GenPoRewards(**args).run()
    assert "complete" in capsys.readouterr().out
    assert read_records(out) == first
    with pytest.raises(InputError, match="overwrite"):
        GenPoRewards(input_file=str(src), reward_model="judge").run()  # the embedded judge
    with pytest.raises(InputError, match="two scorers"):
        GenPoRewards(input_file=str(src), reward_model="judge", reward_model_path="x/y").run()
    with pytest.raises(InputError, match="goes with --reward_model judge"):
        GenPoRewards(input_file=str(src), reward_model="x/y", judge_model_path="m").run()
    with pytest.raises(InputError, match="two judges"):
        GenPoRewards(input_file=str(src), reward_model="judge:a", judge_model_path="b").run()


def test_example_script_without_a_reward_model_ends_with_judged_pairs(tmp_path):
    """scripts/magpie_example_po.sh on the embedded model with no REWARD_MODEL_PATH:
    responses, judge scores, DPO pairs (shorter responses than its 512 tokens, so that
    the test is quick)."""
    src = tmp_path / "example_instructions.jsonl"
    lines = (REPO / "data_po" / "example_instructions.jsonl").read_text().splitlines()[:3]
    src.write_text("\n".join(lines) + "\n")
    env = {
        k: v for k, v in os.environ.items() if k not in ("REWARD_MODEL_PATH", "JUDGE_MODEL_PATH")
    }
    # Responses cut at 48 tokens are flagged unfinished: let them be candidates.
    env.update(
        RES_EXTRA_ARGS="--max_tokens 48", PAIRS_EXTRA_ARGS="--use_flagged", OMP_NUM_THREADS="1"
    )
    script = REPO / "scripts" / "magpie_example_po.sh"
    r = subprocess.run(
        ["bash", str(script), "", str(src), "3"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Reward model: judge (embedded SmolLM2-135M-Instruct" in r.stdout
    scored = read_records(tmp_path / "example_instructions_3res_armorm.json")
    assert len(scored) == 3
    for record in scored:
        assert record["rewards_model"] == f"judge:{DEFAULT_MODEL}"
        assert len(record["rewards"]) == 3
        assert all(1 <= s["score"] <= 5 for s in record["rewards"])
    out = tmp_path / "example_instructions_3res_armorm_dpo"
    pairs = read_records(out / "train.jsonl") + read_records(out / "test.jsonl")
    assert pairs, r.stdout[-2000:]
    by_instruction = {rec["instruction"]: rec for rec in scored}
    for pair in pairs:
        record = by_instruction[pair["prompt"][0]["content"]]
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        assert chosen != rejected and pair["chosen_score"] > pair["rejected_score"]
        scores = {
            t: s["score"] for t, s in zip(record["responses"], record["rewards"], strict=True)
        }
        assert scores[chosen] == pair["chosen_score"]
        assert scores[rejected] == pair["rejected_score"]
    assert "[gen_po_pairs]" in r.stdout


@pytest.mark.slow
def test_judge_on_two_ray_replicas_equals_local(ray_cluster, tmp_path, monkeypatch, capsys):
    """The judge is RewardJob's model like a reward model: on Ray replicas (several
    chunks, each its own batches) the records are the local executor's."""
    records = records_of(VARIED)
    records.insert(1, {"instruction": "", "responses": None, "response_flag": "skipped"})
    src = tmp_path / "v_5res.json"
    src.write_text(json.dumps(records))
    local_out, ray_out = tmp_path / "local.json", tmp_path / "ray.json"
    args = dict(input_file=str(src), reward_model="judge", dtype="float32", batch_size=4)
    GenPoRewards(**args, output_file=str(local_out)).run()
    monkeypatch.setenv("MAGPIE_RAY_CHUNK_SIZE", "2")  # 5 records: 3 chunks
    capsys.readouterr()
    GenPoRewards(**args, output_file=str(ray_out), executor="ray", num_replicas=2).run()
    rates = capsys.readouterr().out
    assert "r0 " in rates and "r1 " in rates and "records in 5, out 5" in rates
    scored, expected = read_records(ray_out), read_records(local_out)
    scores = [[s["score"] for s in r["rewards"] or ()] for r in scored]
    want = [[s["score"] for s in r["rewards"] or ()] for r in expected]
    # Other batches around a prompt (a chunk is batched on its own): float32 noise, ~1e-5.
    assert scores == [pytest.approx(s, abs=1e-4) for s in want]
    assert [{**r, "rewards": None} for r in scored] == [{**r, "rewards": None} for r in expected]
    assert expected[1]["rewards_flag"] == "skipped"
    assert [bool(r["rewards"]) for r in expected] == [True, False, True, True, True]
    assert all(r["rewards_model"] == f"judge:{DEFAULT_MODEL}" for r in expected if r["rewards"])
