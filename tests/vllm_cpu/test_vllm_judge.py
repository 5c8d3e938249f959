"""The judge reward on real vLLM (issue 16): `next_token_probs` reads the rating tokens'
raw logprobs by `logprob_token_ids`, one token per request; scores through RewardJob are
the expected ratings of the model's own logits (a transformers forward pass here)."""

from __future__ import annotations

import json
import math
import time

import pytest
from judge_cases import VARIED, judge_text, records_of

from magpie.judge import JudgeScorer
from magpie.models import DEFAULT_MODEL
from magpie.preference import RewardJob
from magpie.records import read_records


def test_judge_on_vllm_is_the_expected_rating_of_the_models_logits(
    vllm_engine, embedded_dir, tmp_path, timings
):
    import torch
    from transformers import AutoModelForCausalLM

    start = time.monotonic()
    src = tmp_path / "v_5res.json"
    src.write_text(json.dumps(records_of(VARIED)))
    judge = JudgeScorer(vllm_engine, "")
    assert judge.model_path == f"judge:{DEFAULT_MODEL}"
    RewardJob(src, tmp_path / "out.json", reward_model=judge.model_path).run(judge)
    out = read_records(tmp_path / "out.json")

    tok = vllm_engine.tokenizer
    model = AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.float32).eval()
    digits = [tok.convert_tokens_to_ids(str(k)) for k in range(1, 6)]
    scores = []
    for record in out:
        assert record["rewards_model"] == judge.model_path
        for response, got in zip(record["responses"], record["rewards"], strict=True):
            text = judge_text(tok, record["instruction"], response)
            ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                p = model(input_ids=ids).logits[0, -1].float().softmax(-1)[digits].tolist()
            want = sum(k * pk for k, pk in zip(range(1, 6), p, strict=True)) / sum(p)
            assert 1 <= got["score"] <= 5
            assert got["score"] == pytest.approx(want, abs=2e-3)
            scores.append(got["score"])
    assert len(set(scores)) == len(scores)
    # The raw probabilities too (not renormalised): vLLM's full-vocabulary logprobs.
    (row,) = vllm_engine.next_token_probs([text], digits)
    assert row == pytest.approx(p, abs=1e-3)
    assert sum(row) > 0.5
    # A prompt vLLM would refuse reads NaNs, not an error for the call.
    (empty,) = vllm_engine.next_token_probs([[]], digits)
    assert all(math.isnan(x) for x in empty)
    timings["judge: 20 prompts scored + checks"] = time.monotonic() - start
