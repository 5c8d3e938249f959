"""Profiles derived from real chat templates (fixtures) agree with the model registry."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES

from magpie.profiles import derive_profile, get_profile, load_model_configs, profile_from_config
from magpie.records import InputError

INDEX = json.loads((FIXTURES / "chat_templates" / "index.json").read_text())
CONFIGS = load_model_configs()


def derived(entry, key):
    cfg = CONFIGS[key]
    template = (FIXTURES / "chat_templates" / entry["template"]).read_text()
    special = dict(zip(cfg["stop_tokens"], cfg["stop_token_ids"], strict=True))
    return derive_profile(
        key,
        template,
        bos_token=entry.get("bos_token") or "",
        eos_token=entry.get("eos_token") or "",
        special_tokens=special,
    )


SAME = [(e, k) for e in INDEX for k in e["config_keys"]]
ALL = [(e, k) for e in INDEX for k in e["config_keys"] + e["config_keys_differ"]]


@pytest.mark.parametrize("entry, key", SAME, ids=[k for _, k in SAME])
def test_derived_profile_matches_config(entry, key):
    p, cfg = derived(entry, key), CONFIGS[key]
    assert p.pre_query_template == cfg["pre_query_template"]
    if "system_prompt_template" in cfg:
        assert p.system_prompt_template == cfg["system_prompt_template"]
        for variant in ("with_system_prompt", "math", "code", "translation"):
            assert p.variants[variant] == cfg[f"pre_query_template_{variant}"]
    # Every stop string derived from the template is one the registry stops on too.
    assert p.stop_tokens and set(p.stop_tokens) <= set(cfg["stop_tokens"])


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
