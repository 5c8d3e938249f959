"""The signatures the fake-vLLM contract tests enforce are the installed vLLM's own."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import vllm
from vllm import LLM, SamplingParams
from vllm.engine.arg_utils import EngineArgs
from vllm.sampling_params import RepetitionDetectionParams, StructuredOutputsParams

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "vllm_signatures.json"


def public(names) -> list[str]:
    return sorted(n for n in names if not n.startswith("_"))


def test_contract_fixture_matches_installed_vllm():
    recorded = json.loads(FIXTURE.read_text())
    params = inspect.signature(LLM.__init__).parameters
    actual = {
        "vllm_version": vllm.__version__,
        "LLM.__init__": public(p for p in params if p not in ("self", "kwargs")),
        "EngineArgs": public(f.name for f in dataclasses.fields(EngineArgs)),
        "LLM.generate": [p for p in inspect.signature(LLM.generate).parameters if p != "self"],
        "SamplingParams": public(SamplingParams.__struct_fields__),
        "StructuredOutputsParams": public(
            f.name for f in dataclasses.fields(StructuredOutputsParams)
        ),
        "RepetitionDetectionParams": public(
            f.name for f in dataclasses.fields(RepetitionDetectionParams)
        ),
    }
    assert actual == recorded
