"""Profiles derived from real chat templates (fixtures) agree with the model registry."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES

from magpie.profiles import derive_profile, get_profile, load_model_configs, profile_from_config
from magpie.records import InputError

INDEX = json.loads((FIXTURES / "chat_templates" / "index.json").read_text())
CONFIGS = load_model_configs()


HARMONY_SPECIALS = {  # o200k_harmony's special tokens (gpt-oss's tokenizer_config.json)
    "<|startoftext|>": 199998,
    "<|endoftext|>": 199999,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|call|>": 200012,
}
# The special tokens of each model's tokenizer (written by hand from the tokenizers, not
# from the registry: the BOS and tokens that end no turn are included).
SPECIAL_TOKENS = {
    "llama3.jinja": {
        "<|begin_of_text|>": 128000,
        "<|end_of_text|>": 128001,
        "<|start_header_id|>": 128006,
        "<|end_header_id|>": 128007,
        "<|eot_id|>": 128009,
    },
    "llama3.2.jinja": {
        "<|begin_of_text|>": 128000,
        "<|end_of_text|>": 128001,
        "<|start_header_id|>": 128006,
        "<|end_header_id|>": 128007,
        "<|eom_id|>": 128008,
        "<|eot_id|>": 128009,
        "<|python_tag|>": 128010,
    },
    "qwen2.5.jinja": {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645},
    "qwen3.jinja": {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645},
    "smollm2.jinja": {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2},
    "gemma1.1.jinja": {
        "<pad>": 0,
        "<eos>": 1,
        "<bos>": 2,
        "<unk>": 3,
        "<start_of_turn>": 106,
        "<end_of_turn>": 107,
    },
    "phi3-small.jinja": {
        "<|endoftext|>": 100257,
        "<|system|>": 100261,
        "<|user|>": 100262,
        "<|assistant|>": 100263,
        "<|end|>": 100266,
    },
    "deepseek-coder-v2-lite.jinja": {
        "<｜begin▁of▁sentence｜>": 100000,
        "<｜end▁of▁sentence｜>": 100001,
    },
    "gpt-oss-minimal.jinja": HARMONY_SPECIALS,
}
# What the turn must stop on, from the original's registry (original-magpie.md §3) or,
# for families it lacked, the model's end-of-turn token; and the end-of-turn token.
EXPECTED_STOPS = {
    "llama3.jinja": (
        {"<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"},
        "<|eot_id|>",
    ),
    "llama3.2.jinja": (
        {"<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"},
        "<|eot_id|>",
    ),
    "qwen2.5.jinja": ({"<|im_start|>", "<|im_end|>", "<|endoftext|>"}, "<|im_end|>"),
    "qwen3.jinja": ({"<|im_start|>", "<|im_end|>", "<|endoftext|>"}, "<|im_end|>"),
    "smollm2.jinja": ({"<|im_start|>", "<|im_end|>", "<|endoftext|>"}, "<|im_end|>"),
    "gemma1.1.jinja": ({"<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"}, "<end_of_turn>"),
    "phi3-small.jinja": (
        {"<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"},
        "<|end|>",
    ),
    "deepseek-coder-v2-lite.jinja": (
        {
            "<｜begin▁of▁sentence｜>",
            "<｜end▁of▁sentence｜>",
            "<|EOT|>",
            "<｜User｜>",
            "<｜Assistant｜>",
        },
        "<｜end▁of▁sentence｜>",
    ),
    # Harmony: a user message ends at <|end|>; never on <|channel|> or <|message|>, which
    # every answer holds (the original had no harmony model).
    "gpt-oss-minimal.jinja": (
        {"<|end|>", "<|start|>", "<|return|>", "<|call|>", "<|endoftext|>"},
        "<|end|>",
    ),
}


def derived(entry, key):
    template = (FIXTURES / "chat_templates" / entry["template"]).read_text()
    return derive_profile(
        key,
        template,
        bos_token=entry.get("bos_token") or "",
        eos_token=entry.get("eos_token") or "",
        special_tokens=SPECIAL_TOKENS.get(entry["template"], {}),
    )


SAME = [(e, k) for e in INDEX for k in e["config_keys"]]
ALL = [(e, k) for e in INDEX for k in e["config_keys"] + e["config_keys_differ"]]


def test_every_matching_template_has_hand_written_stops():
    assert {e["template"] for e, _ in SAME} == set(EXPECTED_STOPS) == set(SPECIAL_TOKENS)


@pytest.mark.parametrize("entry, key", SAME, ids=[k for _, k in SAME])
def test_derived_profile_matches_config(entry, key):
    p, cfg = derived(entry, key), CONFIGS[key]
    assert p.pre_query_template == cfg["pre_query_template"]
    if "system_prompt_template" in cfg:
        assert p.system_prompt_template == cfg["system_prompt_template"]
        for variant in ("with_system_prompt", "math", "code", "translation"):
            assert p.variants[variant] == cfg[f"pre_query_template_{variant}"]
    # The derived stops end the turn, and are among the ones the original stopped on.
    allowed, end_of_turn = EXPECTED_STOPS[entry["template"]]
    assert end_of_turn in p.stop_tokens
    assert set(p.stop_tokens) <= allowed, set(p.stop_tokens) - allowed


@pytest.mark.parametrize("entry, key", ALL, ids=[k for _, k in ALL])
def test_derived_follow_up_header_matches_config(entry, key):
    assert derived(entry, key).mt_append_template == CONFIGS[key]["mt_append_template"]


def test_gemma_has_no_system_variants():
    entry = next(e for e in INDEX if e["template"] == "gemma2.jinja")
    p = derived(entry, entry["config_keys_differ"][0])
    assert p.system_prompt_template is None and not p.variants
    with pytest.raises(InputError, match="no pre-query template for control task 'code'"):
        p.template("code")


def test_llama31_date_is_fixed_not_today():
    entry = next(e for e in INDEX if e["template"] == "llama3.2.jinja")
    p = derived(entry, entry["config_keys"][0])
    assert "Today Date: 26 Jul 2024" in p.pre_query_template


def test_registry_fixes_of_the_original():
    assert all("<|starter_header_id|>" not in c["stop_tokens"] for c in CONFIGS.values())
    assert "meta-llama/Llama-2-70b-chat-hf" in CONFIGS
    p = profile_from_config(CONFIGS["meta-llama/Meta-Llama-3-8B-Instruct"])
    assert p.template("math").endswith("<|start_header_id|>user<|end_header_id|>\n\n")
    assert "assistant" not in p.stop_tokens  # bare words truncated real instructions


def test_unknown_model_without_tokenizer_is_a_clear_error():
    with pytest.raises(InputError, match="no profile in configs/model_configs.json"):
        get_profile("someone/unknown-model")


# ------------------------------------------------------------------ harmony (gpt-oss)
GPT_OSS_SYSTEM = (
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\nCurrent date: 2024-07-26\n\nReasoning: medium\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message."
    "<|end|>"
)


def harmony_profile():
    template = (FIXTURES / "chat_templates" / "gpt-oss-minimal.jinja").read_text()
    return derive_profile(
        "someone/harmony-model",  # not in the registry: derived from the template
        template,
        bos_token="<|startoftext|>",
        eos_token="<|return|>",
        special_tokens=HARMONY_SPECIALS,
        eos_token_ids=[200002, 199999, 200012],  # gpt-oss's generation_config
    )


def test_derived_harmony_profile_does_not_stop_inside_the_answer():
    # Issue 13: <|message|>, <|start|> and <|end|> were stop tokens, so the answer ended
    # at its third token ("<|channel|>analysis<|message|>") and "analysis" was stored.
    p = harmony_profile()
    assert p.pre_query_template == GPT_OSS_SYSTEM + "<|start|>user<|message|>"
    assert p.system_prompt_template == (
        GPT_OSS_SYSTEM
        + "<|start|>developer<|message|># Instructions\n\n{system_prompt}\n\n<|end|>"
        + "<|start|>user<|message|>"
    )
    assert p.mt_append_template == "<|end|><|start|>user<|message|>"
    # A user turn (instruction) ends with <|end|>; the header tokens never stop anything.
    assert set(p.stop_tokens) == {"<|return|>", "<|end|>", "<|start|>"}
    assert set(p.stop_token_ids) == {200002, 199999, 200012, 200007, 200006}
    # An answer is analysis then final: only <|return|> (and <|call|>, an EOS id) end it.
    assert p.response_stop_tokens == ["<|return|>"]
    assert set(p.response_stop_token_ids) == {200002, 199999, 200012}


def test_gpt_oss_registry_entry_matches_the_harmony_template():
    p = get_profile("openai/gpt-oss-20b")
    assert p.source == "config"
    assert p.pre_query_template == GPT_OSS_SYSTEM + "<|start|>user<|message|>"
    assert p.response_stop_tokens == ["<|return|>", "<|call|>"]
    assert p.response_stop_token_ids == [200002, 200012]
    assert "<|message|>" not in p.stop_tokens and "<|channel|>" not in p.stop_tokens
    assert get_profile("openai/gpt-oss-120b").pre_query_template == p.pre_query_template


def test_other_profiles_answer_with_their_turn_stops():
    p = get_profile("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert p.response_stop_tokens == p.stop_tokens
    assert p.response_stop_token_ids == p.stop_token_ids
    entry = next(e for e in INDEX if e["template"] == "qwen3.jinja")
    q = derived(entry, entry["config_keys"][0])
    assert q.response_stop_tokens == q.stop_tokens  # <think> is no stop; <|im_end|> is
