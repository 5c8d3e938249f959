"""Model profiles: what Magpie needs to know about a model's chat format.

A profile holds the pre-query template (the left side of the chat template, up to where
the user's text starts), its system-prompt variants, the user-turn header that follows a
closed conversation (for multi-turn), and the stop strings and ids that end a turn.

Profiles come from `magpie/configs/model_configs.json` (the original's registry, fixed and
extended) or, for any other model, are derived from the tokenizer's own chat template by
rendering conversations around a sentinel text. Derivation keeps any default system turn
the template inserts (SmolLM2, Qwen2.5, Llama-3.1 date header, gpt-oss's system message):
without it extraction produces junk. Dates are fixed (TEMPLATE_DATE), also for templates
that call strftime_now (magpie.chat_template renders them).

Stop strings: the special tokens of the turn boundaries, less those the model writes
inside its own turn. Harmony (gpt-oss) writes "<|channel|>analysis<|message|>...<|end|>
<|start|>assistant<|channel|>final<|message|>...<|return|>": its header tokens never stop
anything, and an answer (`response_stop_tokens`) ends only at <|return|>, while a user
turn (`stop_tokens`, for instructions) ends at <|end|>.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

from jinja2.exceptions import TemplateError

from magpie.chat_template import render_chat
from magpie.records import InputError
from magpie.resources import CONFIGS_DIR

CONFIG_PATH = CONFIGS_DIR / "model_configs.json"

# The system texts of the original's control-task variants (configs/model_configs.json).
CONTROL_TASKS = ("math", "code", "translation")
SYSTEM_PLACEHOLDER = "{system_prompt}"
# What a profile derived from a chat template stops instructions on: the value of nearly
# every entry of the original's registry.
DERIVED_STOP_TOKENS_ASSISTANT = ("assistant",)
_SENTINEL = "MAGPIESENTINEL7Q"
_SYS_SENTINEL = "MAGPIESYSTEM7Q"
_REPLY = "MAGPIEREPLY7Q"
_THOUGHT = "MAGPIETHOUGHT7Q"


@dataclass
class Profile:
    """A model's Magpie profile. `source` is "config" or "chat_template"."""

    name: str
    pre_query_template: str
    stop_tokens: list[str]
    stop_token_ids: list[int]
    # Words that end an instruction in the instruction stage (the original's
    # `stop_tokens_assistant`: a model that runs on into the assistant's turn writes them).
    stop_tokens_assistant: list[str] = field(default_factory=list)
    mt_append_template: str | None = None
    system_prompt_template: str | None = None
    # Named variants: with_system_prompt, math, code, translation.
    variants: dict[str, str] = field(default_factory=dict)
    source: str = "config"
    # What ends an answer, where it differs from what ends a user turn: harmony (gpt-oss)
    # ends a message with <|end|> and the assistant's turn with <|return|>, and its answer
    # holds several messages ("analysis", then "final"). None: the same as stop_tokens.
    response_stop_tokens: list[str] | None = None
    response_stop_token_ids: list[int] | None = None

    def __post_init__(self) -> None:
        if self.response_stop_tokens is None:
            self.response_stop_tokens = list(self.stop_tokens)
        if self.response_stop_token_ids is None:
            self.response_stop_token_ids = list(self.stop_token_ids)

    def template(self, control_task: str | None = None, system_prompt: bool = False) -> str:
        """The pre-query template for a control task or the system-prompt variant."""
        key = control_task or ("with_system_prompt" if system_prompt else None)
        if key is None:
            return self.pre_query_template
        if key not in self.variants:
            what = f"control task '{control_task}'" if control_task else "--system_prompt"
            raise InputError(
                f"model {self.name}: no pre-query template for {what} "
                f"(its chat format has no system turn, or the config lacks "
                f"pre_query_template_{key})"
            )
        return self.variants[key]

    def with_system(self, system_prompt: str) -> str:
        """The pre-query template with an arbitrary system prompt."""
        if self.system_prompt_template is None:
            raise InputError(f"model {self.name}: its chat format has no system turn")
        return self.system_prompt_template.replace(SYSTEM_PLACEHOLDER, system_prompt)


def load_model_configs(path: str | None = None) -> dict[str, dict]:
    """The model registry: $MAGPIE_MODEL_CONFIGS if set, else configs/model_configs.json."""
    return _load_json(path or os.environ.get("MAGPIE_MODEL_CONFIGS") or str(CONFIG_PATH))


@lru_cache(maxsize=4)
def _load_json(path: str) -> dict[str, dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: model registry not found") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None


def profile_from_config(entry: dict) -> Profile:
    variants = {
        key: entry[f"pre_query_template_{key}"]
        for key in ("with_system_prompt", *CONTROL_TASKS)
        if f"pre_query_template_{key}" in entry
    }
    return Profile(
        name=entry["model_name"],
        pre_query_template=entry["pre_query_template"],
        stop_tokens=list(entry["stop_tokens"]),
        stop_token_ids=list(entry["stop_token_ids"]),
        stop_tokens_assistant=list(entry.get("stop_tokens_assistant", [])),
        mt_append_template=entry.get("mt_append_template"),
        system_prompt_template=entry.get("system_prompt_template"),
        variants=variants,
        source="config",
        response_stop_tokens=entry.get("response_stop_tokens"),
        response_stop_token_ids=entry.get("response_stop_token_ids"),
    )


def _specials_in(text: str, special_tokens: dict[str, int]) -> set[str]:
    return {t for t in special_tokens if t and t in text}


def _prefix_before(text: str, marker: str) -> str | None:
    i = text.find(marker)
    return text[:i] if i != -1 else None


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def derive_profile(
    name: str,
    chat_template: str,
    bos_token: str = "",
    eos_token: str = "",
    special_tokens: dict[str, int] | None = None,
    eos_token_ids: list[int] | None = None,
) -> Profile:
    """Derive a profile from a jinja chat template.

    `special_tokens` maps the tokenizer's special/added token strings to their ids; the
    ones that appear in turn boundaries become stop strings and stop ids, except those the
    model writes inside its turn (before its answer, or between its thoughts and its
    answer when the template renders thoughts): those never end an answer.
    """
    special_tokens = special_tokens or {}

    def render(messages, gen=False):
        return render_chat(
            chat_template, messages, gen, bos_token=bos_token or "", eos_token=eos_token or ""
        )

    user_only = render([{"role": "user", "content": _SENTINEL}])
    pre_query = _prefix_before(user_only, _SENTINEL)
    if pre_query is None:
        raise InputError(f"model {name}: its chat template drops the user's message")
    end_of_user_turn = user_only.split(_SENTINEL, 1)[1]

    # System turn: absent when the template rejects it or drops it.
    system_template = None
    try:
        with_sys = render(
            [{"role": "system", "content": _SYS_SENTINEL}, {"role": "user", "content": _SENTINEL}]
        )
        prefix = _prefix_before(with_sys, _SENTINEL)
        if prefix is not None and _SYS_SENTINEL in prefix:
            system_template = prefix.replace(_SYS_SENTINEL, SYSTEM_PLACEHOLDER)
    except TemplateError:  # raise_exception on a role it does not support (Gemma)
        system_template = None
    except Exception as e:  # a broken template, not a refusal: say so
        raise InputError(
            f"model {name}: its chat template fails on a system message ({type(e).__name__}: {e})"
        ) from None

    # Follow-up user header: what follows the assistant's text in a longer conversation,
    # less the end-of-assistant-turn marker (what a closed conversation ends with). Some
    # templates add more at the very end (Phi-3's <|endoftext|>), so only the shared
    # part of the marker counts, cut back to a token boundary.
    exchange = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _REPLY}]
    assistant_end = render(exchange).split(_REPLY, 1)[-1]
    follow = render([*exchange, {"role": "user", "content": _SENTINEL}])
    mt_append = None
    if _REPLY in follow and _SENTINEL in follow:
        between = follow.split(_REPLY, 1)[1].split(_SENTINEL, 1)[0]
        k = _common_prefix_len(between, assistant_end)
        if k < len(assistant_end):
            while k > 0 and between[k - 1] not in ">\n ":
                k -= 1
        mt_append = between[k:]

    # Tokens the model writes inside its own turn never stop it: what it writes before
    # its answer (harmony's "<|channel|>final<|message|>") and, for a template that
    # renders thoughts, between them and the answer (harmony's "<|end|><|start|>
    # assistant<|channel|>final<|message|>" after the analysis message: there <|end|>
    # ends a message, not the turn).
    prompt = render([{"role": "user", "content": "Hi"}], gen=True)
    opening = render(exchange).split(_REPLY, 1)[0]
    in_turn = _specials_in(opening[_common_prefix_len(opening, prompt) :], special_tokens)
    in_answer = set(in_turn)
    thought = [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": _REPLY,
            "thinking": _THOUGHT,
            "reasoning_content": _THOUGHT,
        },
    ]
    try:
        with_thought = render(thought)
    except Exception:  # a template may refuse the extra keys
        with_thought = ""
    if _THOUGHT in with_thought and _REPLY in with_thought.split(_THOUGHT, 1)[1]:
        between = with_thought.split(_THOUGHT, 1)[1].split(_REPLY, 1)[0]
        in_answer |= _specials_in(between, special_tokens)

    # Turn boundaries: the end of the user turn and of the assistant turn.
    boundary = end_of_user_turn + assistant_end + (mt_append or "") + pre_query

    def stops(skip: set[str]) -> tuple[list[str], list[int]]:
        tokens = [eos_token] if eos_token and eos_token not in skip else []
        for token in sorted(special_tokens, key=len, reverse=True):
            if token and token in boundary and token != bos_token and token not in tokens:
                if token not in skip:
                    tokens.append(token)
        ids = [*(eos_token_ids or []), *(special_tokens[t] for t in tokens if t in special_tokens)]
        return tokens, list(dict.fromkeys(ids))

    stop_tokens, stop_ids = stops(in_turn)
    response_stops, response_ids = stops(in_answer)

    profile = Profile(
        name=name,
        pre_query_template=pre_query,
        stop_tokens=stop_tokens,
        stop_token_ids=stop_ids,
        stop_tokens_assistant=list(DERIVED_STOP_TOKENS_ASSISTANT),
        mt_append_template=mt_append,
        system_prompt_template=system_template,
        source="chat_template",
        response_stop_tokens=response_stops,
        response_stop_token_ids=response_ids,
    )
    if system_template is not None:
        for key, text in system_texts().items():
            profile.variants[key] = profile.with_system(text)
    return profile


@lru_cache(maxsize=1)
def system_texts() -> dict[str, str]:
    """The original's system texts for the with_system_prompt and control-task variants."""
    path = CONFIGS_DIR / "system_prompts.json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def derive_from_tokenizer(name: str, tokenizer, eos_token_ids: list[int] | None = None) -> Profile:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise InputError(
            f"model {name}: no profile in configs/model_configs.json and no chat template "
            "in its tokenizer; add an entry to configs/model_configs.json"
        )
    special = {t: tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens}
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False):
            special[str(added)] = token_id
    ids = list(eos_token_ids or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return derive_profile(
        name,
        template,
        bos_token=tokenizer.bos_token or "",
        eos_token=tokenizer.eos_token or "",
        special_tokens=special,
        eos_token_ids=ids,
    )


def get_profile(name: str, tokenizer=None, eos_token_ids: list[int] | None = None) -> Profile:
    """The config entry for `name` if there is one, else a profile derived from `tokenizer`."""
    configs = load_model_configs()
    if name in configs:
        return profile_from_config(configs[name])
    if tokenizer is None:
        raise InputError(
            f"model {name}: no profile in configs/model_configs.json and no tokenizer to "
            "derive one from"
        )
    return derive_from_tokenizer(name, tokenizer, eos_token_ids)
