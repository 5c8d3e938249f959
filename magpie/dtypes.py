"""Which float type a model runs in: `auto` picks bfloat16 only where it is fast.

bf16 halves memory traffic, but on a CPU without native bf16 matrix products (no
AVX512-BF16 or AMX, e.g. AMD EPYC with AVX2 only) torch falls back to a slow kernel:
measured on such a 2-core VM, a 64 x 576 x 1536 product (SmolLM2's decode shape) ran at
~17 GFLOP/s in bf16 and ~119 GFLOP/s in float32. So `auto` means bf16 on GPUs and on
CPUs with native bf16, float32 elsewhere. Used by the hf engine and the embedder.
"""

from __future__ import annotations

from magpie.records import InputError

DTYPES = ("auto", "float32", "bfloat16", "float16")


def native_bf16(device: str = "cpu") -> bool:
    """Whether `device` multiplies bf16 matrices natively (AVX-512 BF16 or AMX on a CPU)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(dtype: str | None, device: str) -> str:
    """'auto' (or None) -> bfloat16 where `device` computes it natively, else float32; any
    other name is returned as given. InputError for a name not in DTYPES."""
    dtype = dtype or "auto"
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}: use {', '.join(DTYPES)}")
    if dtype == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return dtype
