"""The turn prompts of multi-turn extension and one-pass steered conversations (magpie.turns,
magpie.chat_template): follow-up prompts per template family, system prompt specs, dated
templates. The stages that run them (gen_mt, gen_conv) are tested in test_multiturn.py."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from conftest import FIXTURES

from magpie.chat_template import assistant_turn_prompt, render_chat, user_turn_prompt
from magpie.records import InputError
from magpie.turns import parse_system_prompts


class FixtureTokenizer:
    """Just enough of a tokenizer to render a real chat template kept as a fixture."""

    def __init__(self, template: str, bos: str, eos: str):
        self.chat_template = (FIXTURES / "chat_templates" / template).read_text()
        self.bos, self.eos = bos, eos

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False, **_):
        return render_chat(
            self.chat_template,
            messages,
            add_generation_prompt,
            bos_token=self.bos,
            eos_token=self.eos,
        )


LLAMA3 = FixtureTokenizer("llama3.jinja", "<|begin_of_text|>", "<|eot_id|>")
SMOL = FixtureTokenizer("smollm2.jinja", "<|im_start|>", "<|im_end|>")
QWEN25 = FixtureTokenizer("qwen2.5.jinja", "", "<|im_end|>")
GEMMA2 = FixtureTokenizer("gemma2.jinja", "<bos>", "<eos>")
MISTRAL = FixtureTokenizer("mistral-v0.3-minimal.jinja", "<s>", "</s>")
PHI3 = FixtureTokenizer("phi3.jinja", "<s>", "<|endoftext|>")

TURNS = [{"role": "user", "content": "U1"}, {"role": "assistant", "content": "A1"}]
SYS = [{"role": "system", "content": "S"}]
QWEN_SYS = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
SMOL_SYS = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"

FOLLOW_UP = {
    "llama3": (
        LLAMA3,
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n",
    ),
    "smollm2": (
        SMOL,
        SMOL_SYS + "<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1"
        "<|im_end|>\n<|im_start|>user\n",
    ),
    "qwen2.5": (
        QWEN25,
        QWEN_SYS + "<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1"
        "<|im_end|>\n<|im_start|>user\n",
    ),
    "gemma2": (
        GEMMA2,
        "<bos><start_of_turn>user\nU1<end_of_turn>\n<start_of_turn>model\nA1"
        "<end_of_turn>\n<start_of_turn>user\n",
    ),
    "mistral": (MISTRAL, "<s>[INST] U1[/INST] A1</s>[INST] "),
    "phi3": (PHI3, "<|user|>\nU1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\n"),
}
WITH_SYSTEM = {
    "llama3": (
        LLAMA3,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n",
    ),
    "smollm2": (
        SMOL,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\n",
    ),
    "qwen2.5": (
        QWEN25,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\n",
    ),
    # Mistral's template joins the system text to the last user turn: here, the new one.
    "mistral": (MISTRAL, "<s>[INST] U1[/INST] A1</s>[INST] S\n\n"),
    "phi3": (
        PHI3,
        "<|system|>\nS<|end|>\n<|user|>\nU1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\n",
    ),
}


@pytest.mark.parametrize("family", sorted(FOLLOW_UP))
def test_follow_up_user_prompt_is_exact(family):
    tok, expected = FOLLOW_UP[family]
    prompt = user_turn_prompt(tok, TURNS)
    assert prompt == expected
    if tok.bos and tok.bos != "<|im_start|>":  # SmolLM2's "BOS" is its turn opener
        assert prompt.count(tok.bos) <= 1  # never a second BOS


@pytest.mark.parametrize("family", sorted(WITH_SYSTEM))
def test_follow_up_with_system_prompt_is_exact(family):
    tok, expected = WITH_SYSTEM[family]
    assert user_turn_prompt(tok, SYS + TURNS) == expected


def test_first_turn_with_system_has_no_dangling_assistant_header():
    prompt = user_turn_prompt(LLAMA3, SYS)
    assert prompt == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
    )
    assert "assistant" not in prompt


def test_gemma_rejects_a_system_prompt_clearly():
    with pytest.raises(InputError, match="chat template rejects"):
        user_turn_prompt(GEMMA2, SYS + TURNS)


def test_assistant_prompt_opens_the_assistant_turn():
    p = assistant_turn_prompt(SMOL, TURNS + [{"role": "user", "content": "U2"}])
    assert p.endswith("<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n")


# ------------------------------------------------------------------ system prompt specs
def test_weighted_choice_frequencies_and_float_rounding():
    spec = {k: [f"prompt {k}", w] for k, w in zip("abcde", [0.6, 0.1, 0.1, 0.1, 0.1], strict=True)}
    prompts = parse_system_prompts(spec)  # sums to 0.9999999999999999: accepted
    rng = random.Random(0)
    counts = Counter(prompts.choose(rng)[0] for _ in range(20000))
    assert abs(counts["a"] / 20000 - 0.6) < 0.02
    for k in "bcde":
        assert abs(counts[k] / 20000 - 0.1) < 0.015
    # Unnormalised weights are normalised.
    assert parse_system_prompts({"x": ["p", 3], "y": ["q", 1]}).weights == [0.75, 0.25]


def test_list_and_plain_mapping_are_uniform():
    lst = parse_system_prompts(["p1", "p2"])
    assert lst.keys is None and lst.weights == [1.0, 1.0]
    mapping = parse_system_prompts({"k1": "p1", "k2": "p2"})
    rng = random.Random(1)
    counts = Counter(mapping.choose(rng)[0] for _ in range(4000))
    assert abs(counts["k1"] - 2000) < 150


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"a": ["p", -0.5], "b": ["q", 1.0]}, "negative"),
        ({"a": ["p", 0], "b": ["q", 0.0]}, "all zero"),
        ({"a": ["p", "heavy"]}, "not a number"),
        ({"a": ["p", 1, 2]}, "expected a prompt or"),
        ([], "non-empty strings"),
        ({}, "empty"),
        (42, "expected a string, list or mapping"),
    ],
)
def test_bad_system_prompt_specs(spec, message):
    with pytest.raises(InputError, match=message):
        parse_system_prompts(spec)


def test_system_prompts_from_json_and_yaml(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"math": ["Solve.", 2], "code": ["Code.", 1]}))
    (tmp_path / "p.yaml").write_text("math: [Solve., 2]\ncode: [Code., 1]\n")
    for name in ("p.json", "p.yaml"):
        p = parse_system_prompts(str(tmp_path / name))
        assert p.keys == ["math", "code"] and p.prompts == ["Solve.", "Code."]
        assert abs(p.weights[0] - 2 / 3) < 1e-9


# ------------------------------------------------------------------ dated templates


def test_dated_templates_render_the_fixed_date_in_every_stage(smol_tokenizer):
    """gpt-oss's template asks strftime_now for today's date: stages render the fixed
    template date (as profiles do), so prompts do not change from one day to the next."""
    import copy

    from magpie.chat_template import assistant_turn_prompt, user_turn_prompt

    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = (FIXTURES / "chat_templates" / "gpt-oss-minimal.jinja").read_text()
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    for prompt in (assistant_turn_prompt(tok, messages[:1]), user_turn_prompt(tok, messages)):
        assert "Current date: 2024-07-26" in prompt
