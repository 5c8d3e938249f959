"""OpenAI's frequency and presence penalties: on the output only, on every engine."""

from __future__ import annotations

import pytest
import torch

from magpie.engines.base import SamplingParams
from magpie.engines.hf import _output_penalties, _Row
from magpie.records import InputError


def test_penalties_outside_the_openai_range_are_refused():
    with pytest.raises(InputError, match=r"frequency_penalty must be in \[-2, 2\], not 2.5"):
        SamplingParams(frequency_penalty=2.5)
    with pytest.raises(InputError, match="presence_penalty must be in"):
        SamplingParams(presence_penalty=float("nan"))


def test_hf_penalises_output_tokens_by_count_and_presence_never_prompt_tokens():
    rows = [
        _Row(0, 0, prompt_ids=[2, 3, 9], generated=[5, 5, 7]),  # 9: the prompt's end of turn
        _Row(1, 0, prompt_ids=[5], generated=[]),
    ]
    logits = torch.zeros(2, 10)
    params = SamplingParams(frequency_penalty=0.5, presence_penalty=0.25)
    out = _output_penalties(logits, rows, params, "cpu")
    expected = torch.zeros(2, 10)
    expected[0, 5] = -(2 * 0.5 + 0.25)  # twice in the output
    expected[0, 7] = -(1 * 0.5 + 0.25)
    assert torch.equal(out, expected)  # prompt tokens (2, 3, 9) and the empty row untouched
