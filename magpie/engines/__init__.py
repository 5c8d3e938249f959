"""Engines: one interface (`base.Engine`), several back ends, picked with `--engine`."""

from __future__ import annotations

import importlib.util
import logging

from magpie.engines.base import Completion, Engine, SamplingParams

__all__ = [
    "Completion",
    "Engine",
    "SamplingParams",
    "load_engine",
    "load_tokenizer_for",
    "pick_engine",
]

log = logging.getLogger("magpie")
ENGINES = ("hf", "vllm", "openai")


def pick_engine(engine: str | None) -> str:
    """The engine to use: as asked, else vllm when importable with a GPU, else hf."""
    if engine:
        if engine not in ENGINES:
            from magpie.records import InputError

            raise InputError(f"--engine must be one of {', '.join(ENGINES)}, not '{engine}'")
        return engine
    if importlib.util.find_spec("vllm") is not None:
        import torch

        if torch.cuda.is_available():
            return "vllm"
    return "hf"


def load_engine(engine: str | None, model_path: str, **options) -> Engine:
    """Build an engine. `options` not meant for the chosen back end are ignored."""
    name = pick_engine(engine)
    if options.get("response_mode") == "chat" and name != "openai":
        from magpie.records import InputError

        raise InputError("--response_mode chat needs --engine openai (a server's chat endpoint)")
    log.info("engine: %s%s", name, "" if engine else " (picked automatically)")
    if name == "hf":
        from magpie.engines.hf import HFEngine

        keys = ("dtype", "device", "batch_size", "seed", "trust_remote_code", "tokenizer")
        return HFEngine(model_path, **{k: v for k, v in options.items() if k in keys})
    if name == "vllm":
        from magpie.engines.vllm import VLLMEngine
        from magpie.models import resolve_model

        keys = (
            "dtype",
            "tensor_parallel_size",
            "gpu_memory_utilization",
            "max_model_len",
            "swap_space",
            "seed",
            "trust_remote_code",
        )
        engine_obj = VLLMEngine(
            resolve_model(model_path), **{k: v for k, v in options.items() if k in keys}
        )
        engine_obj.model_path = model_path
        return engine_obj
    from magpie.engines.openai import OpenAIEngine

    keys = (
        "base_url",
        "api_key_env",
        "max_concurrency",
        "request_timeout",
        "response_mode",
        "seed",
        "tokenizer",
        "trust_remote_code",
    )
    return OpenAIEngine(model_path, **{k: v for k, v in options.items() if k in keys})


def load_tokenizer_for(
    engine: str | None, model_path: str, trust_remote_code: bool = False, **options
):
    """The tokenizer for profiles and chat templates, loaded before any weights.

    For a server (`openai`) the model's files may not be on this machine: the server
    engine then supplies a tokenizer-like object built from what the server reports.
    """
    if pick_engine(engine) == "openai":
        from magpie.engines.openai import server_tokenizer

        return server_tokenizer(model_path, trust_remote_code=trust_remote_code, **options)
    from magpie.models import load_tokenizer

    return load_tokenizer(model_path, trust_remote_code)
