"""The original's command lines, accepted unchanged by every stage CLI.

The original parsed its flags with argparse, which also accepts any unambiguous prefix
of a flag: its scripts pass `--tensor_parallel 4` for `--tensor_parallel_size`. Some of
its flags have no meaning here (`--offline`, `--use_tokenizer_template`, `--quantization`,
`--debug` ...); they are accepted with a one-line note and dropped. Any other flag a
stage does not know is refused with one line (exit 2), never dropped silently.

`ORIGINAL_FLAGS` lists, per stage, every option of the original's parser (its
original-magpie.md §2) and whether it takes a value.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from magpie.records import InputError

log = logging.getLogger("magpie")

VALUE, SWITCH = "value", "switch"

_ENGINE = {
    "device": VALUE,
    "dtype": VALUE,
    "tensor_parallel_size": VALUE,
    "gpu_memory_utilization": VALUE,
    "max_model_len": VALUE,
}
_RESPONSES = {
    "model_path": VALUE,
    "input_file": VALUE,
    "batch_size": VALUE,
    "checkpoint_every": VALUE,
    "api_url": VALUE,
    "api_key": VALUE,
    "offline": SWITCH,
    "engine": VALUE,
    **_ENGINE,
    "max_tokens": VALUE,
    "temperature": VALUE,
    "top_p": VALUE,
    "repetition_penalty": VALUE,
    "tokenizer_template": VALUE,
    "use_tokenizer_template": SWITCH,
}
ORIGINAL_FLAGS: dict[str, dict[str, str]] = {
    "gen_ins": {
        "model_path": VALUE,
        "temperature": VALUE,
        "top_p": VALUE,
        "n": VALUE,
        "repeat": VALUE,
        "total_prompts": VALUE,
        "max_tokens": VALUE,
        "early_stopping": VALUE,
        "disable_early_stopping": SWITCH,
        "system_prompt": SWITCH,
        "sanitize": SWITCH,
        "logits_processor": SWITCH,
        "flaming_tokens": SWITCH,
        "control_tasks": VALUE,
        "shuffle": VALUE,
        "skip_special_tokens": VALUE,
        "engine": VALUE,
        **_ENGINE,
        "swap_space": VALUE,
        "checkpoint_every": VALUE,
        "output_folder": VALUE,
        "job_name": VALUE,
        "timestamp": VALUE,
        "seed": VALUE,
    },
    "gen_res": dict(_RESPONSES),
    "gen_po_multi_res": {**_RESPONSES, "num_samples": VALUE},
    "gen_mt": {
        "model_path": VALUE,
        "input_file": VALUE,
        "num_turns": VALUE,
        "batch_size": VALUE,
        "checkpoint_every": VALUE,
        **_ENGINE,
        "max_tokens": VALUE,
        "early_stopping": VALUE,
        "disable_early_stopping": SWITCH,
        "instruction_temperature": VALUE,
        "instruction_top_p": VALUE,
        "instruction_repetition_penalty": VALUE,
        "response_temperature": VALUE,
        "response_top_p": VALUE,
        "response_repetition_penalty": VALUE,
        "tokenizer_template": VALUE,
        "use_tokenizer_template": SWITCH,
        "debug": VALUE,
    },
    "gen_po_rewards": {
        "input_file": VALUE,
        "batch_size": VALUE,
        "checkpoint_every": VALUE,
        "device": VALUE,
        "max_tokens": VALUE,
        "top_k": VALUE,
        "repetition_penalty": VALUE,
        "stop_tokens": VALUE,
    },
    "unitag": {
        "tag_mission": VALUE,
        "model_path": VALUE,
        "guard_model_path": VALUE,
        "reward_model_path": VALUE,
        "input_file": VALUE,
        "batch_size": VALUE,
        "checkpoint_every": VALUE,
        "api": VALUE,
        "offline": SWITCH,
        "online": SWITCH,
        "api_url": VALUE,
        "api_key": VALUE,
        "debug": VALUE,
        "save_as": VALUE,
        **_ENGINE,
        "quantization": VALUE,
        "kv_cache_dtype": VALUE,
        "max_tokens": VALUE,
        "temperature": VALUE,
        "repetition_penalty": VALUE,
    },
    "gen_dis": {
        "sentence_model": VALUE,
        "input_file": VALUE,
        "encoding_batch_size": VALUE,
        "distance_distance_threshold": VALUE,
        "search_space_size": VALUE,
        "search_batch_size": VALUE,
        "device": VALUE,
        "save_faiss_index": VALUE,
    },
}

# No-op flags of the original accepted by every generation and tagging stage: its
# scripts pass them between stages (`--offline` is on gen_res's and gen_po_multi_res's
# command lines, not gen_ins's), and here none of them changes anything.
SHARED_NOOPS = {
    "offline": SWITCH,
    "use_tokenizer_template": SWITCH,
    "tokenizer_template": VALUE,
    "quantization": VALUE,
    "kv_cache_dtype": VALUE,
    "debug": VALUE,
}
for _stage in ("gen_ins", "gen_res", "gen_po_multi_res", "gen_mt", "unitag"):
    ORIGINAL_FLAGS[_stage] = {**SHARED_NOOPS, **ORIGINAL_FLAGS[_stage]}

# Why a flag of the original means nothing here (the note printed when it is dropped).
NOOP_NOTES = {
    "offline": "offline generation is the default here",
    "use_tokenizer_template": "the model's own chat template is always used",
    "tokenizer_template": "the model's own chat template is always used",
    "quantization": "weights load in --dtype (the original's fp8 default could change labels)",
    "kv_cache_dtype": "the KV cache uses the engine's default",
    "debug": "there is no debug mode; run on a small input file instead",
    "skip_special_tokens": "special tokens never reach instruction text here",
    "api": "API tagging is --engine openai with --base_url",
    "online": "API tagging is --engine openai with --base_url",
    "api_url": "use --engine openai with --base_url",
    "api_key": "keys come from the environment (--api_key_env), never the command line",
    "top_k": "the original accepted but never used it",
    "max_tokens": "the original accepted but never used it",
    "repetition_penalty": "the original accepted but never used it",
    "stop_tokens": "the original accepted but never used it",
}
# Fire's own flags, and its `--noX` form of a boolean flag X.
_FIRE_FLAGS = {"help", "h", "interactive", "i", "trace", "t", "verbose", "v", "completion"}


def stage_name(argv0: str | None = None) -> str:
    """The stage a script is (gen_ins for exp/gen_ins.py)."""
    return os.path.splitext(os.path.basename(argv0 or sys.argv[0]))[0]


def original_argv(stage: str, argv: list[str], accepted: set[str]) -> list[str]:
    """`argv` with the original's abbreviations spelt out and its meaningless flags
    dropped (one note each). `accepted` holds the stage's own flag names. Unknown or
    ambiguous flags raise InputError."""
    original = ORIGINAL_FLAGS.get(stage, {})
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":
            out.extend(argv[i - 1 :])
            break
        if not token.startswith("--") or len(token) == 2:
            out.append(token)
            continue
        name, eq, value = token[2:].partition("=")
        key = name.replace("-", "_")
        if key in accepted or key in _FIRE_FLAGS:
            out.append(token)
            continue
        if key.startswith("no") and key[2:] in accepted:
            out.append(token)
            continue
        full = _expand(stage, key, original, accepted)
        if full in accepted:
            out.append(f"--{full}" + (f"={value}" if eq else ""))
            continue
        # An original flag with no meaning here: drop it and its value.
        if original[full] == VALUE and not eq and i < len(argv) and not argv[i].startswith("--"):
            value = argv[i]
            i += 1
        shown = f"--{full}" + (f" {value}" if original[full] == VALUE and value else "")
        log.info("note: %s ignored (%s)", shown, NOOP_NOTES.get(full, "no meaning here"))
    return out


def _expand(stage: str, key: str, original: dict[str, str], accepted: set[str]) -> str:
    """The original's flag that `key` names, exactly or as argparse's unique prefix."""
    if key in original:
        return key
    matches = sorted(f for f in original if f.startswith(key))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InputError(
            f"--{key} is ambiguous for {stage}: {', '.join('--' + m for m in matches)}"
        )
    raise InputError(f"unknown flag --{key} for {stage} (see --help)")


def cuda_visible_devices(device: str | int | None) -> str | None:
    """The original's `--device 0` / `--device 0,1,2,3`: GPU indices, set as
    CUDA_VISIBLE_DEVICES (as its gen_ins/gen_res/gen_mt did). Returns the torch device
    left for the engine: None (its default) for indices, else `device` unchanged."""
    if device is None or device == "":
        return None
    text = str(device).strip("()[] ").replace(" ", "")
    if re.fullmatch(r"\d+(,\d+)*", text):
        if os.environ.get("CUDA_VISIBLE_DEVICES") != text:
            log.info("note: --device %s sets CUDA_VISIBLE_DEVICES=%s", text, text)
        os.environ["CUDA_VISIBLE_DEVICES"] = text
        return None
    return str(device)


def torch_device(device: str | int | None) -> str | None:
    """A single-device stage's `--device`: a bare number N is cuda:N (the original's
    meaning there), names (cpu, cuda, cuda:1) pass through."""
    if device is None or device == "":
        return None
    text = str(device)
    return f"cuda:{text}" if text.isdigit() else text
