"""Exact in the default precision (issue 23): bfloat16 where the CPU computes it natively,
else float32 (`magpie.dtypes`); the hf engine runs the batch-invariant attention and
matrix products of `magpie.engines.invariant`, so a row's logits are the same
bits whatever else is in its batch, its place there, its padding and when it was
admitted; the same seed then gives the same records at any batch size, after a SIGKILL
and resume, and on one or two Ray replicas. The float32 versions of these tests are in
test_hf_engine.py, test_generation.py and test_ray.py; these run in the default dtype.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO

from magpie.dtypes import resolve_dtype
from magpie.engines import EngineOptions, invariant
from magpie.engines.base import SamplingParams
from magpie.engines.hf import HFEngine
from magpie.instructions import InstructionJob
from magpie.models import DEFAULT_MODEL
from magpie.profiles import get_profile
from magpie.records import read_records, state_path

DEFAULT_DTYPE = getattr(torch, resolve_dtype("auto", "cpu"))
pytestmark = pytest.mark.skipif(
    invariant.probe(DEFAULT_DTYPE, "cpu") is not None,
    reason=f"this CPU's kernels are not batch-invariant: {invariant.probe(DEFAULT_DTYPE, 'cpu')}",
)


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "created"} for r in records]


@pytest.fixture(scope="module")
def smol(embedded_dir):
    """The embedded model with the engine's defaults (batch-invariant, dtype auto)."""
    eng = HFEngine(str(embedded_dir), seed=0)
    assert eng.exact and next(eng.model.parameters()).dtype == DEFAULT_DTYPE
    assert eng.model.config._attn_implementation == invariant.ATTN_IMPLEMENTATION
    return eng


@pytest.fixture(scope="module")
def smol_bf16(embedded_dir, smol):
    """The embedded model in bfloat16 where a shared prefix is reused exactly (a CPU with
    native bf16, AVX512-BF16 or AMX: `invariant.prefix_reuse_is_exact`)."""
    if not invariant.prefix_reuse_is_exact(torch.bfloat16):
        pytest.skip("an exact engine reuses a shared prefix with oneDNN's native bf16 only")
    if DEFAULT_DTYPE == torch.bfloat16:
        return smol
    eng = HFEngine(str(embedded_dir), seed=0, dtype="bfloat16")
    assert eng.exact and eng.min_shared_prefix is not None
    return eng


@pytest.fixture(scope="module")
def smol_profile(smol_tokenizer):
    return get_profile(DEFAULT_MODEL, smol_tokenizer)


def left_padded(rows: list[list[int]]):
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask


@torch.inference_mode()
def last_logits(model, rows: list[list[int]], steps: list[list[int]]) -> list[torch.Tensor]:
    """Each row's last-position logits after prefilling `rows` together (left-padded) and
    decoding `steps` (one token per row per step) with the KV cache: one tensor per step."""
    ids, mask = left_padded(rows)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=(mask.cumsum(1) - 1).clamp(min=0),
        use_cache=True,
    )
    seen, cache = [out.logits[:, -1].clone()], out.past_key_values
    for tokens in steps:
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = model(
            input_ids=torch.tensor(tokens).unsqueeze(1),
            attention_mask=mask,
            position_ids=mask.sum(1, keepdim=True) - 1,
            past_key_values=cache,
            use_cache=True,
        )
        seen.append(out.logits[:, -1].clone())
        cache = out.past_key_values
    return seen


def test_a_rows_logits_are_the_same_bits_in_any_batch(smol):
    """Prompts of 1 to 90 tokens (odd and even paddings, a row longer or shorter than the
    rest), prefilled and decoded 3 steps: each row's logits equal, bit for bit, its
    logits alone, at every batch composition and position in the batch."""
    gen = torch.Generator().manual_seed(0)
    lengths = [37, 1, 90, 12, 61, 2]
    prompts = [torch.randint(100, 40000, (n,), generator=gen).tolist() for n in lengths]
    feed = [torch.randint(100, 40000, (3,), generator=gen).tolist() for _ in lengths]
    alone = [
        last_logits(smol.model, [p], [[t] for t in f]) for p, f in zip(prompts, feed, strict=True)
    ]
    for combo in ([0, 1], [1, 0], [2, 0, 3], [3, 4, 5, 0, 1, 2], [5, 5, 0], [4, 2]):
        steps = [[feed[i][s] for i in combo] for s in range(3)]
        batched = last_logits(smol.model, [prompts[i] for i in combo], steps)
        for place, i in enumerate(combo):
            for step in range(4):
                assert torch.equal(batched[step][place], alone[i][step][0]), (combo, i, step)


def test_a_row_admitted_later_gets_the_same_bits(smol):
    """The engine's own prefill and splice: a row admitted into a running batch (its
    cache left-padded to the batch's width) gets the same logits as when it starts."""
    from magpie.engines.hf import _Row

    prompt = smol.encode("<|im_start|>user\nName three rivers.<|im_end|>\n")
    other = smol.encode("<|im_start|>user\nWrite a long story about a dragon and a king.")
    _, _, first = smol._admit([], [_Row(0, 0, prompt)], None, None)
    rows = [_Row(1, 0, other)]
    cache, mask, _ = smol._admit([], rows, None, None)
    for token in (300, 400, 500, 600, 700):  # the running row decodes a few tokens
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        with torch.inference_mode():
            out = smol.model(
                input_ids=torch.tensor([[token]]),
                attention_mask=mask,
                position_ids=mask.sum(1, keepdim=True) - 1,
                past_key_values=cache,
                use_cache=True,
            )
        cache = out.past_key_values
    with torch.inference_mode():
        _, _, later = smol._admit(rows, [_Row(0, 0, prompt)], cache, mask)
    assert torch.equal(later[0], first[0])


def instruction_job(profile, out: Path) -> InstructionJob:
    return InstructionJob(
        profile,
        out,
        model_name=DEFAULT_MODEL,
        total_prompts=12,
        n=4,
        max_tokens=48,
        top_p=0.9,
        seed=7,
    )


@pytest.fixture(scope="module")
def default_instructions(tmp_path_factory, smol_profile) -> Path:
    """12 instructions from the embedded model in the default dtype, batch size 64."""
    out = tmp_path_factory.mktemp("ins") / "ins.json"
    EngineOptions(batch_size=64).run(instruction_job(smol_profile, out), "", seed=7)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [3, 8])
def test_default_dtype_records_are_identical_at_batch_sizes_3_8_64(
    smol_profile, default_instructions, tmp_path, batch_size
):
    out = tmp_path / "ins.json"
    EngineOptions(batch_size=batch_size).run(instruction_job(smol_profile, out), "", seed=7)
    reference = read_records(default_instructions)
    texts = [r["instruction"] for r in reference]
    assert len(set(texts)) == 12 and all(texts)  # real, varied instructions
    assert without_time(read_records(out)) == without_time(reference)


@pytest.mark.slow
def test_default_dtype_records_on_two_ray_replicas_equal_one_process(
    ray_cluster, smol_profile, default_instructions, tmp_path
):
    out = tmp_path / "ray_ins.json"
    opts = EngineOptions(executor="ray", num_replicas=2)
    os.environ["MAGPIE_RAY_CHUNK_SIZE"] = "1"  # 3 rounds over 2 replicas
    try:
        opts.run(instruction_job(smol_profile, out), "", seed=7)
    finally:
        del os.environ["MAGPIE_RAY_CHUNK_SIZE"]
    assert without_time(read_records(out)) == without_time(read_records(default_instructions))


def gen_ins(model_dir: Path, out: Path, batch_size: int) -> list[str]:
    return [
        sys.executable,
        str(REPO / "exp" / "gen_ins.py"),
        "--model_path",
        str(model_dir),
        "--total_prompts",
        "40",
        "--n",
        "5",
        "--max_tokens",
        "24",
        "--top_p",
        "0.9",
        "--batch_size",
        str(batch_size),
        "--output_folder",
        str(out),
        "--timestamp",
        "1000",
        "--seed",
        "11",
    ]


@pytest.mark.slow
def test_default_dtype_records_after_sigkill_and_resume_equal_an_uninterrupted_run(
    tiny_model_dir, tmp_path
):
    """The default dtype (auto): an uninterrupted run at batch size 64, and a run at
    batch size 3 killed twice and resumed, write the same records."""
    ref_out, out = tmp_path / "reference", tmp_path / "out"
    ref = subprocess.run(gen_ins(tiny_model_dir, ref_out, 64), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    name = f"Magpie_{tiny_model_dir.name}_40_1000_ins.json"
    final, journal = out / name, state_path(out / name, ".journal.jsonl")
    kills = 0
    for threshold in (10, 25):
        proc = subprocess.Popen(
            gen_ins(tiny_model_dir, out, 3), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 180
        while (journal.read_text().count("\n") if journal.exists() else 0) < threshold:
            if proc.poll() is not None:
                break
            assert time.time() < deadline
            time.sleep(0.02)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    done = subprocess.run(gen_ins(tiny_model_dir, out, 3), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    reference = json.loads((ref_out / name).read_text())
    records = json.loads(final.read_text())
    assert [r["id"] for r in records] == list(range(40))
    assert without_time(records) == without_time(reference)
    assert len({r["instruction"] for r in records}) > 35  # sampled, varied text


def test_batch_invariant_false_keeps_transformers_attention(tiny, smol_tokenizer, caplog):
    """--batch_invariant False: today's attention, and the log says once that the run's
    records are not exact."""
    model = tiny.to(torch.bfloat16)
    with caplog.at_level("WARNING", logger="magpie"):
        eng = HFEngine("tiny", model=model, tokenizer=smol_tokenizer, batch_invariant=False)
        HFEngine("tiny", model=model, tokenizer=smol_tokenizer, batch_invariant=False)
    assert not eng.exact
    assert model.config._attn_implementation != invariant.ATTN_IMPLEMENTATION
    notes = [r.message for r in caplog.records if "not batch-invariant" in r.message]
    assert len(notes) <= 1  # once per process (an earlier test may have said it)


def test_float32_runs_the_invariant_attention_where_its_kernels_allow_it(tiny, smol_tokenizer):
    """float32 too is batch-invariant where the probe passes (AVX2 CPUs, where `auto`
    picks it, measured: products padded to MIN_ROWS rows and columns)."""
    eng = HFEngine("tiny", model=tiny.to(torch.float32), tokenizer=smol_tokenizer)
    exact = invariant.probe(torch.float32, "cpu") is None
    assert eng.exact == exact
    assert (tiny.config._attn_implementation == invariant.ATTN_IMPLEMENTATION) == exact
    # A prefix computed alone would not give the full pass's bits in fixed key blocks.
    assert (eng.min_shared_prefix is None) == exact
    out = eng.generate([[5, 6, 7]], SamplingParams(max_tokens=3, temperature=0.0))
    assert out[0][0].completion_tokens == 3


def test_vllm_batch_invariant_is_refused_on_the_cpu_build_with_one_line(monkeypatch):
    from magpie.engines import vllm as vllm_engine
    from magpie.records import InputError

    monkeypatch.setattr(vllm_engine, "on_cpu_platform", lambda: True)
    with pytest.raises(InputError, match="--dtype float32") as refused:
        vllm_engine.refuse_batch_invariant_on_cpu()
    assert "\n" not in str(refused.value)
    monkeypatch.setattr(vllm_engine, "on_cpu_platform", lambda: False)
    vllm_engine.refuse_batch_invariant_on_cpu()  # a GPU: vLLM's own mode is asked for


def shared_head_prompts(length: int = 150) -> list[list[int]]:
    """Prompts that start with the same `length` tokens (a tag mission's instructions),
    then differ: suffixes of odd and even lengths, one so short that its padding reaches
    into the head's columns, one so long that every other row's does. (From about 64
    shared tokens on, a prefix computed once for rows of both parities differs in the
    last bits from the full pass: measured.)"""
    gen = torch.Generator().manual_seed(1)
    head = torch.randint(100, 40000, (length,), generator=gen).tolist()
    return [head + torch.randint(100, 40000, (n,), generator=gen).tolist() for n in (1, 7, 12, 61)]


def test_a_shared_prefix_is_computed_once_and_gives_the_same_bits(smol_bf16):
    """next_token_probs' batches: the prefix every prompt shares is prefilled once (its
    keys and values then copied into each row), and each row's logits equal, bit for bit,
    those of the prompt run alone through the model (issue 26)."""
    prompts = shared_head_prompts()
    alone = [last_logits(smol_bf16.model, [p], [])[0][0] for p in prompts]
    smol_bf16._prefixes = []
    fed: list[int] = []
    hook = smol_bf16.model.register_forward_pre_hook(
        lambda m, a, kw: fed.append(kw["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        with torch.inference_mode():
            logits, _, _ = smol_bf16._prefill(prompts, keep_cache=False)
    finally:
        hook.remove()
    assert smol_bf16._prefixes[0].tokens == tuple(prompts[0][:150])
    # The head (twice: as rows of even and odd length hold it), then the suffixes only.
    assert fed == [150, 151, max(map(len, prompts)) - 150]
    for r, p in enumerate(prompts):
        assert torch.equal(logits[r], alone[r]), (r, len(p))


def test_generation_from_a_shared_prefix_decodes_the_same_bits(smol_bf16):
    """Rows admitted with a shared prefix (a long system prompt) decode, step after step,
    the same logits as each prompt prefilled and decoded alone."""
    from magpie.engines.hf import _Row

    prompts = shared_head_prompts(151)
    feed = [[300 + r, 400 + r, 500 + r] for r in range(len(prompts))]
    alone = [
        last_logits(smol_bf16.model, [p], [[t] for t in f])
        for p, f in zip(prompts, feed, strict=True)
    ]
    smol_bf16._prefixes = []
    with torch.inference_mode():
        cache, mask, first = smol_bf16._admit(
            [], [_Row(r, 0, p) for r, p in enumerate(prompts)], None, None
        )
        assert smol_bf16._prefixes and len(smol_bf16._prefixes[0].tokens) == 151
        steps = [first]
        for s in range(3):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = smol_bf16.model(
                input_ids=torch.tensor([[f[s]] for f in feed]),
                attention_mask=mask,
                position_ids=mask.sum(1, keepdim=True) - 1,
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            steps.append(out.logits[:, -1])
    for r in range(len(prompts)):
        for s in range(4):
            assert torch.equal(steps[s][r], alone[r][s][0]), (r, s)


def test_next_token_probs_with_and_without_the_shared_prefix_are_equal(smol_bf16):
    prompts = shared_head_prompts()
    tokens = [11, 500, 30000]
    smol_bf16._prefixes = []
    reused = smol_bf16.next_token_probs(prompts, tokens)
    assert smol_bf16._prefixes
    smol_bf16.min_shared_prefix = None
    try:
        full = smol_bf16.next_token_probs(prompts, tokens)
    finally:
        smol_bf16.min_shared_prefix = 32
    assert reused == full and all(0 < p < 1 for row in full for p in row)


def readme_tokens(smol, count: int) -> list[int]:
    """Natural text (this repository's README), tokenised: attention over real text is
    peaked and wide-ranged, unlike over random tokens."""
    ids = smol.encode((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(ids) >= count
    return ids[:count]


def test_rows_longer_than_a_key_block_keep_their_bits_in_any_batch(smol):
    """Past `invariant.KEY_BLOCK` keys (about 570 on this CPU) the bf16 product's own
    blocking moved with the padding: a 90-token row batched with a 1,100-token one got
    other logits than alone (measured before the fix). Rows of 90 to 1,100 tokens,
    prefilled together and decoded 2 steps, equal each row alone."""
    text = readme_tokens(smol, 1300)
    prompts = [text[i * 50 : i * 50 + n] for i, n in enumerate((700, 517, 90, 1100))]
    alone = [last_logits(smol.model, [p], [[300], [400]]) for p in prompts]
    batched = last_logits(smol.model, prompts, [[300] * 4, [400] * 4])
    for r in range(len(prompts)):
        for step in range(3):
            assert torch.equal(batched[step][r], alone[r][step][0]), (r, step)


def test_a_shared_prefix_is_cut_at_the_key_blocks_of_long_rows(smol_bf16):
    """Rows longer than KEY_BLOCK take the shared prefix only up to their first block
    boundary (`invariant.prefix_columns`) and still get the bits of the prompt alone."""
    text = readme_tokens(smol_bf16, 1400)
    head, rest = text[:150], text[150:]
    prompts = [head + rest[i * 40 : i * 40 + n] for i, n in enumerate((450, 950, 50, 250))]
    # Rows of 600 and 1,100 tokens: boundaries at 88 and 76 (and 588) keys.
    assert invariant.prefix_columns([len(p) for p in prompts], 150) == 76
    alone = [last_logits(smol_bf16.model, [p], [])[0][0] for p in prompts]
    smol_bf16._prefixes = []
    with torch.inference_mode():
        logits, _, _ = smol_bf16._prefill(prompts, keep_cache=False)
    assert smol_bf16._prefixes[0].tokens[:150] == tuple(head)
    for r in range(len(prompts)):
        assert torch.equal(logits[r], alone[r]), r
