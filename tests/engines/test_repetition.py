"""Degenerate repetition is stopped while decoding and flagged (issue 16)."""

from __future__ import annotations

import pytest

from magpie.completion import read_completion
from magpie.engines.base import Completion, SamplingParams
from magpie.engines.repetition import MAX_PATTERN, first_repeat, repeats


def test_a_block_repeated_four_times_at_the_end_is_a_loop():
    prefix = list(range(100, 110))
    block = [5, 6, 7, 8, 9, 10, 11, 12]  # 8 tokens: the shortest block checked
    assert not repeats(prefix + block * 3)
    assert repeats(prefix + block * 4)
    assert repeats(prefix + block * 4 + block[:3])  # a rotation of the block repeats too
    assert first_repeat(prefix + block * 6 + [1, 2]) == 10 + 32  # when it first held


def test_short_blocks_count_as_their_multiples():
    assert not repeats([1, 2, 3] + [7] * 31)
    assert repeats([1, 2, 3] + [7] * 32)  # one token 32 times: a block of 8, 4 times
    assert not repeats([4, 5, 6] * 11 + [4, 5])  # 35 tokens of a 3-token block
    assert repeats([4, 5, 6] * 12)  # 36: a block of 9, 4 times


@pytest.mark.parametrize(
    "tokens",
    [
        list(range(300)),  # nothing repeats
        [1, 2] * 3 + list(range(10, 60)),  # "ha ha ha" then text
        [t for i in range(20) for t in (1000 + i, 5, 6, 7, 8)],  # items differ in a number
        list(range(MAX_PATTERN + 1)) * 4,  # a block longer than MAX_PATTERN
    ],
)
def test_text_that_is_not_a_loop_is_left_alone(tokens):
    assert not repeats(tokens) and first_repeat(tokens) is None


def test_the_stages_flag_a_repetitive_completion():
    c = Completion("Step 1. Mix.", "repetitive", None, 3, 200)
    assert read_completion(c) == (None, "Step 1. Mix.", "repetitive")


@pytest.mark.slow
def test_hf_engine_stops_a_looping_row_on_the_embedded_model(smol_tokenizer):
    """Greedy SmolLM2 asked to repeat a word loops; the row ends as soon as the rule holds,
    with the text the unchecked run had up to there."""
    from magpie.chat_template import chat_prompt
    from magpie.engines.hf import HFEngine
    from magpie.models import DEFAULT_MODEL

    engine = HFEngine(DEFAULT_MODEL, seed=0, dtype="float32")
    asks = ["Repeat the word 'hello' 100 times.", "Write the number 7 fifty times in a row."]
    prompts = [chat_prompt(smol_tokenizer, [{"role": "user", "content": a}]) for a in asks]
    free = engine.generate(
        prompts, SamplingParams(temperature=0, max_tokens=200, stop_repetition=False)
    )
    checked = engine.generate(prompts, SamplingParams(temperature=0, max_tokens=200))
    assert len(checked) == len(asks)  # both prompts answered: the checks below run
    for (f,), (c,) in zip(free, checked, strict=True):
        assert c.finish_reason == "repetitive", c.text
        assert c.completion_tokens < f.completion_tokens  # tokens saved
        assert f.text.startswith(c.text)  # the same greedy path, cut where it looped
        ids = smol_tokenizer.encode(c.text, add_special_tokens=False)
        assert first_repeat(ids) is not None
