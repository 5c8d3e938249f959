"""Our repetition rule is vLLM's: the same verdict on every sequence, and a looping row on
real vLLM ends with finish_reason "repetitive" (issue 16)."""

from __future__ import annotations

import random

from magpie.engines.base import SamplingParams
from magpie.engines.repetition import first_repeat, repeats, vllm_params


def test_repeats_agrees_with_vllms_own_check():
    from vllm.sampling_params import RepetitionDetectionParams
    from vllm.v1.core.sched.utils import check_sequence_repetition

    params = RepetitionDetectionParams(**vllm_params())
    rng = random.Random(0)
    looped = 0
    for _ in range(3000):
        block = [rng.randrange(4) for _ in range(rng.randrange(1, 70))]
        tokens = [rng.randrange(4) for _ in range(rng.randrange(0, 40))]
        tokens += block * rng.randrange(1, 8) + block[: rng.randrange(len(block) + 1)]
        ours = repeats(tokens)
        assert ours == check_sequence_repetition(tokens, params), tokens
        looped += ours
    assert 300 < looped < 2700  # both verdicts were exercised


def test_vllm_stops_a_looping_row(vllm_engine):
    from magpie.chat_template import chat_prompt

    ask = "Repeat the word 'hello' 100 times."
    prompt = chat_prompt(vllm_engine.tokenizer, [{"role": "user", "content": ask}])
    ((c,),) = vllm_engine.generate([prompt], SamplingParams(temperature=0, max_tokens=200))
    assert c.finish_reason == "repetitive" and c.completion_tokens < 200, c.text
    ids = vllm_engine.tokenizer.encode(c.text, add_special_tokens=False)
    assert first_repeat(ids) is not None
