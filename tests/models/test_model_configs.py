"""Consistency of configs/model_configs.json, the chat-template fixtures and the per-model scripts.

No model is loaded: the fixtures in tests/fixtures/chat_templates are the real chat templates of
the models (see their index.json for where each was read), rendered here with jinja2 the way
transformers renders them.

Keys of the original Magpie registry keep the original's pre_query_template (its released datasets
were generated with those strings) even where the model's current chat template renders something
else. index.json lists such keys under `config_keys_differ` (each entry's `notes` says so and gives
the template's rendering); keys whose pre_query_template equals the rendering are under
`config_keys`.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from functools import cache
from pathlib import Path

import pytest
import yaml
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from magpie.resources import RECIPES_DIR

ROOT = Path(__file__).resolve().parents[2]
CONFIG_PATH = ROOT / "configs" / "model_configs.json"
FIXTURES = ROOT / "tests" / "fixtures" / "chat_templates"
SCRIPTS = ROOT / "scripts"

PLACEHOLDER = "{system_prompt}"
# The four system texts of the original Magpie config (reference §3), byte for byte.
SYSTEM_TEXTS = {
    "pre_query_template_with_system_prompt": (
        "A chat between a curious user and an artificial intelligence assistant. The assistant "
        "gives helpful, detailed, and polite answers to the user's questions."
    ),
    "pre_query_template_math": (
        "You are an AI assistant designed to provide helpful, step-by-step guidance on solving "
        "math problems. The user will ask you a wide range of complex mathematical questions.\n"
        "Your purpose is to assist users in understanding mathematical concepts, working through "
        "equations, and arriving at the correct solutions."
    ),
    "pre_query_template_code": (
        "You are an AI assistant designed to provide helpful, step-by-step guidance on coding "
        "problems. The user will ask you a wide range of coding questions.\n"
        "Your purpose is to assist users in understanding coding concepts, working through code, "
        "and arriving at the correct solutions."
    ),
    "pre_query_template_translation": (
        "You are an AI assistant specifically designed to provide accurate and contextually "
        "appropriate translations. Users will ask you to translate text between various languages.\n"
        "Your purpose is to assist users in understanding and conveying meaning across languages, "
        "maintaining the original context and nuances."
    ),
}
SYSTEM_FIELDS = ["system_prompt_template", *SYSTEM_TEXTS]
REQUIRED = {
    "model_name": str,
    "stop_tokens": list,
    "stop_token_ids": list,
    "stop_tokens_assistant": list,
    "pre_query_template": str,
    "mt_append_template": str,
}
OPTIONAL = {
    "notes": str,
    **dict.fromkeys(SYSTEM_FIELDS, str),
    # what ends an answer where it is not what ends a user turn (harmony)
    "response_stop_tokens": list,
    "response_stop_token_ids": list,
}

# Families whose chat format has no system turn (the template raises, drops it, or merges it
# into a user message): they must not carry the system fields.
NO_SYSTEM_ROLE = {
    "google/gemma-1.1-7b-it": "Gemma templates raise on a system message",
    "google/gemma-2-2b-it": "Gemma templates raise on a system message",
    "google/gemma-2-9b-it": "Gemma templates raise on a system message",
    "google/gemma-2-27b-it": "Gemma templates raise on a system message",
    "mistralai/Mistral-7B-Instruct-v0.3": "system text is merged into the last user message",
    "microsoft/Phi-3-medium-128k-instruct": "its template silently drops system messages",
    "NousResearch/Nous-Hermes-llama-2-7b": "Alpaca-style format without a system role",
}
# Where a system turn is not followed by the plain user header (genuinely different format).
SYSTEM_NOT_ENDING_WITH_USER_HEADER = {
    "meta-llama/Llama-2-7b-chat-hf": "Llama-2 puts <<SYS>> inside the first [INST] block",
    "meta-llama/Llama-2-70b-chat-hf": "Llama-2 puts <<SYS>> inside the first [INST] block",
}
# Config keys that no stored real chat template covers (each says why in its notes).
NOT_COVERED_BY_FIXTURE = {
    "lmsys/vicuna-7b-v1.5": "no chat_template in its tokenizer_config",
    "NousResearch/Nous-Hermes-llama-2-7b": "no chat_template in its tokenizer_config",
    "Qwen/Qwen3-4B-Instruct-2507": "no stored copy of its template was found",
}
# Regression check: the original Magpie pre-query templates (reference §3) of a few keys whose
# current chat templates render something else; they must not be "corrected" to the rendering.
ORIGINAL_PRE_QUERY = {
    "meta-llama/Meta-Llama-3.1-8B-Instruct": (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
    ),
    "Qwen/Qwen2-7B-Instruct": "<|im_start|>user\n",
    "google/gemma-2-9b-it": "<bos><start_of_turn>user\n\n",
    "meta-llama/Llama-2-7b-chat-hf": "<s> [INST] ",
    "microsoft/Phi-3-mini-128k-instruct": "<s> <|user|>\n",
}
# System variants kept at the original's value although they are not system_prompt_template
# filled with the common system text.
ORIGINAL_SYSTEM_VARIANTS = {
    ("Qwen/Qwen2-Math-7B-Instruct", "pre_query_template_with_system_prompt"): (
        # the original used Qwen2's default system text here, not the Vicuna-style one
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    ),
}
# Original pre-query templates that do not end with mt_append_template, which follows the real
# chat template's user header.
PRE_QUERY_NOT_ENDING_WITH_MT_APPEND = {
    "meta-llama/Llama-2-7b-chat-hf": "original '<s> [INST] ' has a space the template omits",
    "meta-llama/Llama-2-70b-chat-hf": "original '<s> [INST] ' has a space the template omits",
    "google/gemma-2-2b-it": "original ends 'user\\n\\n'; the template renders one newline",
    "google/gemma-2-9b-it": "original ends 'user\\n\\n'; the template renders one newline",
    "google/gemma-2-27b-it": "original ends 'user\\n\\n'; the template renders one newline",
}
EMBEDDED_DEFAULT = "HuggingFaceTB/SmolLM2-135M-Instruct"
FIXED_DATE = "26 Jul 2024"  # the Llama-3.1/3.2 templates' own fallback date_string
FIXED_DATETIME = datetime(2024, 7, 26)  # strftime_now's date (gpt-oss: "%Y-%m-%d")


@cache
def configs() -> dict:
    return json.loads(CONFIG_PATH.read_text(encoding="utf-8"))


@cache
def fixture_index() -> list[dict]:
    return json.loads((FIXTURES / "index.json").read_text(encoding="utf-8"))


@cache
def jinja_env() -> ImmutableSandboxedEnvironment:
    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: FIXED_DATETIME.strftime(fmt)
    return env


@cache
def compiled(name: str):
    return jinja_env().from_string((FIXTURES / name).read_text(encoding="utf-8"))


def render(item: dict, messages: list[dict]) -> str:
    return compiled(item["template"]).render(
        messages=messages,
        add_generation_prompt=False,
        bos_token=item["bos_token"],
        eos_token=item["eos_token"],
    )


def user_prefix(item: dict) -> str:
    rendered = render(item, [{"role": "user", "content": "XYZ"}])
    assert rendered.count("XYZ") == 1
    return rendered.split("XYZ")[0]


def squeeze(text: str) -> str:
    return re.sub(r"[ \n]", "", text)


def all_keys(item: dict) -> list[str]:
    return [*item["config_keys"], *item["config_keys_differ"]]


# Drivers of other stages, not per-model delegates of magpie.sh.
OTHER_DRIVERS = {"magpie-multi-turn.sh", "magpie_example_po.sh"}


def per_model_scripts() -> list[Path]:
    """Every scripts/magpie-*.sh and magpie_*.sh (not the common driver magpie.sh)."""
    return sorted(p for p in SCRIPTS.glob("magpie[-_]*.sh") if p.name not in OTHER_DRIVERS)


def test_other_drivers_parse():
    for name in OTHER_DRIVERS:
        result = subprocess.run(["bash", "-n", str(SCRIPTS / name)], capture_output=True)
        assert result.returncode == 0, name


def script_default_model(path: Path) -> str | None:
    """The model of the recipe a per-model script runs (RECIPE="${RECIPE:-name}")."""
    match = re.search(r'RECIPE="\$\{RECIPE:-([^}]*)\}"', path.read_text(encoding="utf-8"))
    if not match:
        return None
    recipe = yaml.safe_load((RECIPES_DIR / f"{match.group(1)}.yaml").read_text(encoding="utf-8"))
    return recipe["model_path"]


# ---------------------------------------------------------------- config structure


def test_config_is_a_nonempty_object():
    assert isinstance(configs(), dict) and len(configs()) >= 34


@pytest.mark.parametrize("key", sorted(configs()))
def test_entry_fields_and_types(key):
    entry = configs()[key]
    for field, kind in REQUIRED.items():
        assert isinstance(entry.get(field), kind), f"{key}: {field} missing or not {kind.__name__}"
    for field in entry:
        assert field in REQUIRED or field in OPTIONAL, f"{key}: unexpected field {field}"
        if field in OPTIONAL:
            assert isinstance(entry[field], OPTIONAL[field]), f"{key}: {field} type"
    assert entry["model_name"] == key
    assert all(isinstance(t, str) and t for t in entry["stop_tokens"])
    assert all(isinstance(t, str) and t for t in entry["stop_tokens_assistant"])
    assert all(isinstance(i, int) and not isinstance(i, bool) for i in entry["stop_token_ids"])
    assert len(entry["stop_token_ids"]) == len(entry["stop_tokens"])
    if "response_stop_tokens" in entry or "response_stop_token_ids" in entry:
        assert len(entry["response_stop_tokens"]) == len(entry["response_stop_token_ids"])
        assert all(isinstance(t, str) and t for t in entry["response_stop_tokens"])
    assert entry["pre_query_template"] and entry["mt_append_template"]


@pytest.mark.parametrize("key", sorted(configs()))
def test_system_variants_follow_the_system_template(key):
    entry = configs()[key]
    present = [f for f in SYSTEM_FIELDS if f in entry]
    if key in NO_SYSTEM_ROLE:
        assert present == [], f"{key} has no system role ({NO_SYSTEM_ROLE[key]})"
        return
    assert present == SYSTEM_FIELDS, f"{key}: needs all of {SYSTEM_FIELDS}"
    template = entry["system_prompt_template"]
    assert template.count(PLACEHOLDER) == 1
    for field, text in SYSTEM_TEXTS.items():
        if (key, field) in ORIGINAL_SYSTEM_VARIANTS:
            assert entry[field] == ORIGINAL_SYSTEM_VARIANTS[key, field], f"{key}: {field}"
            continue
        assert entry[field] == template.replace(PLACEHOLDER, text), f"{key}: {field}"


@pytest.mark.parametrize("key", sorted(configs()))
def test_templates_end_with_the_user_header(key):
    entry = configs()[key]
    header = entry["mt_append_template"]
    if key in PRE_QUERY_NOT_ENDING_WITH_MT_APPEND:
        # Same header up to spaces and newlines.
        assert squeeze(entry["pre_query_template"]).endswith(squeeze(header)), key
    else:
        assert entry["pre_query_template"].endswith(header), key
    if key in NO_SYSTEM_ROLE:
        return
    if key in SYSTEM_NOT_ENDING_WITH_USER_HEADER:
        # Llama-2: the system block sits inside the first [INST]; the user text follows it.
        for field in SYSTEM_FIELDS:
            assert entry[field].endswith("<</SYS>>\n\n"), f"{key}: {field}"
        return
    for field in SYSTEM_FIELDS:
        assert entry[field].endswith(header), f"{key}: {field}"


@pytest.mark.parametrize("key", sorted(configs()))
def test_stop_tokens_are_special_tokens_not_words(key):
    for token in configs()[key]["stop_tokens"]:
        assert not re.fullmatch(r"[A-Za-z ]+", token), f"{key}: bare word {token!r} in stop_tokens"
        assert token.strip() == token


def test_fixes_of_the_original():
    for key, entry in configs().items():
        assert "<|starter_header_id|>" not in entry["stop_tokens"], key
    llama_405b = configs()["meta-llama/Meta-Llama-3.1-405B-Instruct"]
    assert "<|start_header_id|>" in llama_405b["stop_tokens"]
    assert "meta-llama/Llama-2-70b-chat-hf" in configs()
    skip = {"model_name", "notes"}
    llama2_70b = {
        k: v for k, v in configs()["meta-llama/Llama-2-70b-chat-hf"].items() if k not in skip
    }
    llama2_7b = {
        k: v for k, v in configs()["meta-llama/Llama-2-7b-chat-hf"].items() if k not in skip
    }
    assert llama2_70b == llama2_7b


def test_smollm2_pre_query_keeps_the_default_system_turn():
    entry = configs()[EMBEDDED_DEFAULT]
    assert entry["pre_query_template"] == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "<|im_end|>\n<|im_start|>user\n"
    )
    assert dict(zip(entry["stop_tokens"], entry["stop_token_ids"], strict=True)) == {
        "<|endoftext|>": 0,
        "<|im_start|>": 1,
        "<|im_end|>": 2,
    }


# ---------------------------------------------------------------- real chat templates


def test_every_fixture_is_indexed_and_every_key_is_covered():
    listed = {item["template"] for item in fixture_index()}
    assert listed == {p.name for p in FIXTURES.glob("*.jinja")}
    covered = [k for item in fixture_index() for k in all_keys(item)]
    assert len(covered) == len(set(covered)), "a config key is listed twice"
    assert set(covered) <= set(configs())
    assert set(configs()) - set(covered) == set(NOT_COVERED_BY_FIXTURE)
    for item in fixture_index():
        assert isinstance(item["config_keys"], list)
        assert isinstance(item["config_keys_differ"], list)
        assert item["source"] and all_keys(item)


@pytest.mark.parametrize("item", fixture_index(), ids=lambda item: item["template"])
def test_fixture_renders_the_pre_query_template(item):
    prefix = user_prefix(item)
    for key in item["config_keys"]:
        assert prefix == configs()[key]["pre_query_template"], key


@pytest.mark.parametrize("item", fixture_index(), ids=lambda item: item["template"])
def test_keys_that_keep_the_original_value_say_so(item):
    prefix = user_prefix(item)
    for key in item["config_keys_differ"]:
        entry = configs()[key]
        assert entry["pre_query_template"] != prefix, f"{key}: belongs under config_keys"
        notes = entry.get("notes", "")
        assert "Original Magpie value kept" in notes, key
        assert prefix.replace("\n", "\\n") in notes, f"{key}: notes must give the rendering"


def test_original_pre_query_templates_are_kept():
    differ = {k for item in fixture_index() for k in item["config_keys_differ"]}
    for key, original in ORIGINAL_PRE_QUERY.items():
        assert key in differ, key
        assert configs()[key]["pre_query_template"] == original, key
    for (key, field), original in ORIGINAL_SYSTEM_VARIANTS.items():
        assert configs()[key][field] == original, f"{key}: {field}"


# Original-style system variants of config_keys_differ keys follow their pre-query
# template, not the rendering, so only fixtures with a matching system entry are checked.
WITH_SYSTEM = [
    item
    for item in fixture_index()
    if any("system_prompt_template" in configs()[k] for k in item["config_keys"])
]


@pytest.mark.parametrize("item", WITH_SYSTEM, ids=lambda item: item["template"])
def test_fixture_renders_the_system_template(item):
    keys = [k for k in item["config_keys"] if "system_prompt_template" in configs()[k]]
    messages = [{"role": "system", "content": "SYSTEM-TEXT"}, {"role": "user", "content": "XYZ"}]
    prefix = render(item, messages).split("XYZ")[0]
    for key in keys:
        entry = configs()[key]
        assert prefix == entry["system_prompt_template"].replace(PLACEHOLDER, "SYSTEM-TEXT"), key


@pytest.mark.parametrize("item", fixture_index(), ids=lambda item: item["template"])
def test_fixture_renders_the_follow_up_user_header(item):
    messages = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    between = render(item, messages).split("A1")[1].split("Q2")[0]
    for key in all_keys(item):
        assert between.endswith(configs()[key]["mt_append_template"]), key


# ---------------------------------------------------------------- per-model scripts


def test_there_are_per_model_scripts():
    names = {p.name for p in per_model_scripts()}
    for expected in [
        "magpie-llama3-8b.sh",
        "magpie-llama2-70b.sh",
        "magpie-gemma2-27b.sh",
        "magpie-qwen2.5-math-72b.sh",
        "magpie-smollm2-135m.sh",
        "magpie_math.sh",
    ]:
        assert expected in names


@pytest.mark.parametrize("path", per_model_scripts(), ids=lambda p: p.name)
def test_script_syntax_and_model(path):
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    model = script_default_model(path)
    assert model is not None, f'{path.name}: no RECIPE="${{RECIPE:-<recipe>}}"'
    assert model == "" or model in configs(), f"{path.name}: {model} not in model_configs.json"
    text = path.read_text(encoding="utf-8")
    assert 'magpie.sh"' in text
    assert "--use_tokenizer_template" not in text and "--offline" not in text


# ---------------------------------------------------------------- BOS (issue 14)

# The BOS each model was trained with first, written from the families' tokenizers (their
# bos_token with add_bos_token on, or the chat template's own first token); "" = none
# (Qwen's tokenizers add no BOS and its templates write none). Prompts go in as token ids
# with no special tokens added, so the template text must carry it, exactly once.
BOS_BY_FAMILY = {
    "meta-llama/Meta-Llama-3": "<|begin_of_text|>",
    "meta-llama/Llama-3": "<|begin_of_text|>",
    "meta-llama/Llama-2": "<s>",
    "lmsys/vicuna": "<s>",
    "NousResearch/Nous-Hermes-llama-2": "<s>",
    "mistralai/Mistral": "<s>",
    "microsoft/Phi-3-small": "<|endoftext|>",
    "microsoft/Phi-3": "<s>",
    "google/gemma": "<bos>",
    "01-ai/Yi": "<|startoftext|>",
    "deepseek-ai/DeepSeek": "<｜begin▁of▁sentence｜>",
    "HuggingFaceTB/SmolLM2": "<|im_start|>",
    "Qwen/": "",
    "openai/gpt-oss": "",  # harmony: the published template starts at <|start|>, no BOS
}
# BOS texts that are no turn marker: none may follow the BOS (a second BOS).
SECOND_BOS = {b for b in BOS_BY_FAMILY.values() if b} - {"<|im_start|>"}
# Where the registry's BOS is not what the stored chat template renders, and why.
BOS_NOT_RENDERED = {
    "01-ai/Yi-1.5-34B-Chat": "its current template writes no BOS; the original's "
    "<|startoftext|> (Yi's pretraining BOS) is kept",
    "microsoft/Phi-3-mini-128k-instruct": "its current template writes no BOS; the original's "
    "<s> (its Llama-2 tokenizer's BOS) is kept",
    "microsoft/Phi-3.5-mini-instruct": "as Phi-3-mini",
    "microsoft/Phi-3-medium-128k-instruct": "as Phi-3-mini",
}


def expected_bos(key: str) -> str:
    family = max((f for f in BOS_BY_FAMILY if key.startswith(f)), key=len)
    return BOS_BY_FAMILY[family]


def test_every_registry_key_has_a_known_bos():
    for key in configs():
        assert any(key.startswith(f) for f in BOS_BY_FAMILY), f"{key}: add its family's BOS"


@pytest.mark.parametrize("key", sorted(configs()))
def test_templates_carry_exactly_the_models_bos(key):
    bos = expected_bos(key)
    entry = configs()[key]
    for field in ["pre_query_template", *SYSTEM_FIELDS]:
        if field not in entry:
            continue
        text = entry[field]
        if bos:
            assert text.startswith(bos), f"{key}: {field} lacks the BOS {bos!r}"
            rest = text[len(bos) :]
        else:
            rest = text
        assert not any(rest.lstrip(" ").startswith(b) for b in SECOND_BOS), f"{key}: {field}"


@pytest.mark.parametrize("item", fixture_index(), ids=lambda item: item["template"])
def test_real_templates_agree_on_the_bos(item):
    rendered = user_prefix(item)
    for key in all_keys(item):
        if key not in BOS_NOT_RENDERED:
            assert rendered.startswith(expected_bos(key)), key
