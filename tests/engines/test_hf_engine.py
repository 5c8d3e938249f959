"""The hf engine's continuous batching, checked against transformers' own generate."""

from __future__ import annotations

import re

import pytest
import torch

from magpie.engines.base import SamplingParams, cut_at_stop
from magpie.engines.hf import HFEngine
from magpie.logits import markdown_header_token_ids


def engine(tiny, tok, batch_size=3, seed=0):
    return HFEngine("tiny", model=tiny, tokenizer=tok, batch_size=batch_size, seed=seed)


PROMPTS = [
    "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nA much longer prompt with many more words in it to pad<|im_end|>\n",
    "Short",
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhy is the sky blue?",
    "One two three four five six seven",
    "x",
    "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n",
]


def reference_greedy(model, tok, prompt: str, max_tokens: int) -> list[int]:
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=max_tokens,
        min_new_tokens=max_tokens,
        pad_token_id=tok.pad_token_id,
    )
    return out[0, ids.shape[1] :].tolist()


def reference_text(model, tok, prompt: str, max_tokens: int) -> str:
    """transformers' greedy continuation of `prompt` as the engine reports text: decoded,
    special tokens removed."""
    text = tok.decode(reference_greedy(model, tok, prompt, max_tokens), skip_special_tokens=False)
    for special in tok.all_special_tokens:
        text = text.replace(special, "")
    return text


def test_continuous_batching_matches_unbatched_generate(tiny, smol_tokenizer):
    """Rows joining and leaving a batch of 3 decode exactly as each prompt alone would."""
    max_tokens = 12
    eng = engine(tiny, smol_tokenizer, batch_size=3)
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    got = eng.generate(PROMPTS, params)
    for prompt, (c,) in zip(PROMPTS, got, strict=True):
        assert c.text == reference_text(tiny, smol_tokenizer, prompt, max_tokens)
        assert c.finish_reason == "length"
        assert c.completion_tokens == max_tokens
        assert c.prompt_tokens == len(smol_tokenizer(prompt, add_special_tokens=False).input_ids)


SYSTEM = (
    "<|im_start|>system\nYou are a careful assistant. Answer in plain words, cite what you "
    "use, say when you do not know, and keep every answer short and to the point.<|im_end|>\n"
)


def test_a_shared_system_prompt_is_prefilled_once_and_decodes_as_alone(tiny, smol_tokenizer):
    """Prompts sharing a long system prompt (issue 26: prefilled once, its keys and values
    copied into every row), float32: the same greedy tokens as transformers' generate on
    each prompt alone, and next-token probabilities within 1e-6 of a full forward pass.
    Run with transformers' attention: an exact float32 engine keeps its fixed key blocks
    and does not reuse a prefix (`invariant.prefix_reuse_is_exact`)."""
    prompts = [SYSTEM + p for p in PROMPTS[:5]]
    eng = HFEngine(
        "tiny", model=tiny, tokenizer=smol_tokenizer, batch_size=8, seed=0, batch_invariant=False
    )
    got = eng.generate(prompts, SamplingParams(temperature=0.0, max_tokens=8))
    assert eng._prefixes and len(eng._prefixes[0].tokens) >= 32
    assert smol_tokenizer.decode(eng._prefixes[0].tokens).startswith(SYSTEM[:60])
    for prompt, (c,) in zip(prompts, got, strict=True):
        assert c.text == reference_text(tiny, smol_tokenizer, prompt, 8)
        assert c.completion_tokens == 8
    tokens = [11, 500, 30000]
    eng._prefixes = []
    probs = eng.next_token_probs(prompts, tokens)
    assert eng._prefixes
    for prompt, row in zip(prompts, probs, strict=True):
        ids = smol_tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.inference_mode():
            want = torch.softmax(tiny(input_ids=ids).logits[0, -1].double(), dim=-1)[tokens]
        assert row == pytest.approx(want.tolist(), abs=1e-6, rel=1e-4)


def test_stop_id_ends_row_at_once_and_is_not_in_text(tiny, smol_tokenizer):
    eng = engine(tiny, smol_tokenizer)
    free = eng.generate(PROMPTS[:3], SamplingParams(temperature=0.0, max_tokens=10))
    # Make the 4th greedy token of prompt 0 a stop id: generation must end right there.
    ids = reference_greedy(tiny, smol_tokenizer, PROMPTS[0], 10)
    stopped = eng.generate(
        PROMPTS[:1], SamplingParams(temperature=0.0, max_tokens=10, stop_token_ids=[ids[3]])
    )[0][0]
    first = ids.index(ids[3])
    assert stopped.finish_reason == "stop"
    assert stopped.stop_reason == ids[3]
    assert stopped.completion_tokens == first + 1
    assert free[0][0].completion_tokens == 10


def test_stop_string_cuts_at_earliest_match(tiny, smol_tokenizer):
    eng = engine(tiny, smol_tokenizer)
    full = eng.generate(PROMPTS[:1], SamplingParams(temperature=0.0, max_tokens=16))[0][0].text
    assert len(full) > 10
    late, early = full[8:11], full[3:5]
    got = eng.generate(
        PROMPTS[:1], SamplingParams(temperature=0.0, max_tokens=16, stop=[late, early])
    )[0][0]
    assert got.finish_reason == "stop"
    assert got.text == full[: full.find(early)]
    assert got.stop_reason == early


def test_cut_at_stop_prefers_earliest_not_list_order():
    assert cut_at_stop("abc\nxyz<end>", ["<end>", "\n"]) == ("abc", "\n")
    assert cut_at_stop("plain", ["<end>"]) == ("plain", None)


def test_n_samples_seeded_and_streamed_once(tiny, smol_tokenizer):
    params = SamplingParams(n=4, temperature=1.0, max_tokens=6, seed=7)
    a = list(engine(tiny, smol_tokenizer, batch_size=5).stream(PROMPTS[:3], params))
    b = engine(tiny, smol_tokenizer, batch_size=5).generate(PROMPTS[:3], params)
    assert sorted(i for i, _ in a) == [0, 1, 2]
    assert all(len(c) == 4 for _, c in a)
    assert [[c.text for c in cs] for cs in b] == [[c.text for c in cs] for _, cs in sorted(a)]
    # Samples differ (a random model at temperature 1 over a 49k vocabulary).
    assert len({c.text for c in b[0]}) > 1


def test_de_markdown_bans_header_first_token(tiny, smol_tokenizer):
    """With a bias that makes '#' the favourite token, only the first token avoids it."""
    hash_id = smol_tokenizer.convert_tokens_to_ids("#")
    assert hash_id in markdown_header_token_ids(smol_tokenizer)
    handle = tiny.lm_head.register_forward_hook(
        lambda m, i, out: out.index_add(
            -1, torch.tensor([hash_id]), torch.full((*out.shape[:-1], 1), 100.0)
        )
    )
    try:
        eng = engine(tiny, smol_tokenizer)
        plain = eng.generate(["Hi"], SamplingParams(temperature=0.0, max_tokens=3))[0][0]
        banned = eng.generate(
            ["Hi"], SamplingParams(temperature=0.0, max_tokens=3, logits_processor="de_markdown")
        )[0][0]
    finally:
        handle.remove()
    assert plain.text == "###"
    assert not banned.text.lstrip().startswith("#")
    assert banned.text.endswith("##")


def test_repetition_penalty_matches_transformers(tiny, smol_tokenizer):
    """A model biased towards '#' repeats it; the penalty stops that exactly as HF's does."""
    hash_id = smol_tokenizer.convert_tokens_to_ids("#")
    handle = tiny.lm_head.register_forward_hook(
        lambda m, i, out: out.index_add(
            -1, torch.tensor([hash_id]), torch.full((*out.shape[:-1], 1), 3.0)
        )
    )
    try:
        eng = engine(tiny, smol_tokenizer)
        base = eng.generate(["Hi"], SamplingParams(temperature=0.0, max_tokens=8))[0][0]
        ours = eng.generate(
            ["Hi"], SamplingParams(temperature=0.0, max_tokens=8, repetition_penalty=50.0)
        )[0][0]
        ids = smol_tokenizer("Hi", add_special_tokens=False, return_tensors="pt").input_ids
        ref = tiny.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=8,
            repetition_penalty=50.0,
            pad_token_id=smol_tokenizer.pad_token_id,
        )[0, ids.shape[1] :]
    finally:
        handle.remove()
    assert base.text.count("#") > 4
    assert ours.text == smol_tokenizer.decode(ref, skip_special_tokens=True)
    assert ours.text.count("#") == 1


def test_sampler_matches_the_nucleus_distribution():
    """Inverse-CDF sampling with top-p: only the nucleus is drawn, in proportion."""
    from magpie.engines.hf import TOP_P_CANDIDATES, _sample

    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(40000, 1)
    g = torch.Generator().manual_seed(0)
    draws = _sample(logits, 1.0, 0.7, torch.rand((40000, 1), generator=g))
    counts = torch.bincount(draws, minlength=4).float() / len(draws)
    # The nucleus for top_p 0.7 is {0, 1} (0.5 < 0.7 <= 0.8), renormalised to 5/8, 3/8.
    assert counts[2:].sum() == 0
    assert abs(counts[0] - 0.625) < 0.01 and abs(counts[1] - 0.375) < 0.01
    uniform = torch.rand((40000, 1), generator=g)
    full = torch.bincount(_sample(logits, 1.0, 1.0, uniform), minlength=4).float() / len(draws)
    assert torch.allclose(full, probs, atol=0.01)
    # A flat distribution over more than TOP_P_CANDIDATES tokens takes the exact fallback.
    flat = torch.zeros(8, TOP_P_CANDIDATES * 4)
    assert _sample(flat, 1.0, 0.9, torch.rand((8, 1), generator=g)).max() >= TOP_P_CANDIDATES


def reference_nucleus(logits: torch.Tensor, top_p: float) -> set[int]:
    """The smallest set of tokens whose probability reaches top_p, in float64 numpy."""
    import numpy as np

    x = logits.double().numpy()
    p = np.exp(x - x.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    before = np.cumsum(p[order]) - p[order]
    return set(order[before < top_p].tolist())


@pytest.mark.slow
def test_top_p_is_exact_when_the_top_candidates_hold_less_than_p(embedded_dir, smol_tokenizer):
    """On SmolLM2's real 49k vocabulary and real next-token logits (temperature 1), whose
    top 1,024 candidates hold ~0.87 of the mass: with top_p just below that, the nucleus
    drawn from must be the reference nucleus. The candidate cut once renormalised over the
    candidates and so kept only tokens up to ~0.73 of the true mass."""
    from transformers import AutoModelForCausalLM

    from magpie.engines.hf import TOP_P_CANDIDATES, _sample

    model = AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.float32).eval()
    ids = smol_tokenizer("<|im_start|>user\n", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    probs = torch.softmax(logits.double(), dim=-1)
    top = probs.topk(TOP_P_CANDIDATES).values.sum().item()
    top_p = round(top - 0.02, 3)  # the candidates hold more than top_p: no fallback
    assert 0.5 < top_p < top < 0.999
    expected = reference_nucleus(logits, top_p)
    assert 100 < len(expected) < TOP_P_CANDIDATES
    # Uniform numbers spread over [0, 1) map onto the whole nucleus by inverse CDF: all
    # drawn tokens lie in it, and u -> 1 gives its least likely token, the boundary.
    steps = 2000
    uniform = torch.cat([(torch.arange(steps - 1) + 0.5) / steps, torch.tensor([1 - 1e-7])])
    drawn = _sample(logits.repeat(steps, 1), 1.0, top_p, uniform.unsqueeze(1)).tolist()
    assert set(drawn) <= expected
    boundary = min(expected, key=lambda t: probs[t].item())
    assert probs[drawn[-1]].item() == pytest.approx(probs[boundary].item(), rel=1e-6)


def test_a_rows_text_depends_on_its_seed_not_its_batch_or_call(tiny, smol_tokenizer):
    """Sample j of prompt i draws from seeds[i] + j alone: batch size, which prompts share
    the call and their order change nothing (float32 model, so numerics are exact)."""
    params = SamplingParams(n=3, temperature=1.0, top_p=0.9, max_tokens=8)
    seeds = [100, 200, 300, 400]
    whole = engine(tiny, smol_tokenizer, batch_size=12).generate(PROMPTS[:4], params, seeds)
    texts = [[c.text for c in cs] for cs in whole]
    assert len({t for ts in texts for t in ts}) > 6  # sampled, not constant
    # Prompt 2 alone, in a batch of 1.
    alone = engine(tiny, smol_tokenizer, batch_size=1).generate([PROMPTS[2]], params, [300])
    assert [c.text for c in alone[0]] == texts[2]
    # Reversed order, another batch size, other engine seed.
    rev = engine(tiny, smol_tokenizer, batch_size=5, seed=99).generate(
        PROMPTS[:4][::-1], params, seeds[::-1]
    )
    assert [[c.text for c in cs] for cs in rev][::-1] == texts
    # The same prompt under two seeds differs; identical prompts with one seed agree.
    twin = engine(tiny, smol_tokenizer).generate([PROMPTS[0], PROMPTS[0]], params, [5, 5])
    assert [c.text for c in twin[0]] == [c.text for c in twin[1]]
    other = engine(tiny, smol_tokenizer).generate([PROMPTS[0]], params, [6])
    assert [c.text for c in other[0]] != [c.text for c in twin[0]]
    assert other[0][0].text == twin[0][1].text  # sample 1 of seed 5 is sample 0 of seed 6


def test_bad_prompts_are_flagged_not_fatal(tiny, smol_tokenizer):
    """An empty prompt or one that fills the context comes back "rejected" with the
    reason; the other prompts of the call are generated as usual."""
    eng = engine(tiny, smol_tokenizer)
    too_long = [5] * tiny.config.max_position_embeddings
    params = SamplingParams(max_tokens=4, temperature=0.0)
    out = eng.generate([PROMPTS[0], [], too_long, PROMPTS[2]], params)
    assert [c.finish_reason for (c,) in out] == ["length", "rejected", "rejected", "length"]
    assert [out[1][0].stop_reason, out[2][0].stop_reason] == ["empty_prompt", "prompt_too_long"]
    assert out[1][0].text == "" and out[0][0].text


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"temperature": 2.5}, "temperature must be in [0, 2]"),
        ({"temperature": 0.0, "n": 3}, "3 samples at temperature 0"),
        ({"top_p": 0.0}, "top_p must be in (0, 1]"),
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
        ({"n": 0}, "n must be at least 1"),
    ],
)
def test_settings_no_engine_can_honour_are_refused(settings, message):
    from magpie.records import InputError

    with pytest.raises(InputError, match=re.escape(message)):
        SamplingParams(**settings)
    assert SamplingParams(stop=["", "\n"]).stop == ["\n"]  # empty stop strings dropped
