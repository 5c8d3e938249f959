"""Response sampling defaults (issue 16): with no --model_path (the embedded
SmolLM2-135M-Instruct) every response stage samples at temperature 0.7, top_p 0.9,
frequency penalty 0.3, at most 512 tokens, the settings measured in BENCHMARKS.md; with a
model path the original's defaults hold; a flag the user passes wins either way."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from magpie.engines import EngineOptions
from magpie.pipeline import plan
from magpie.records import read_records
from magpie.stage import Summary
from magpie.stages.gen_mt import GenConv, GenMt
from magpie.stages.gen_res import GenPoMultiRes, GenRes

# The numbers (BENCHMARKS.md, "Response settings for the embedded default").
EMBEDDED = {"temperature": 0.7, "top_p": 0.9, "frequency_penalty": 0.3, "max_tokens": 512}
# The original's defaults (reference/original-magpie.md): greedy answers, n=5 at 0.8 for
# preference data; gen_conv (distilabel's options) 2048 tokens a turn.
ORIGINAL = {
    "gen_res": {"temperature": 0.0, "top_p": 1.0, "frequency_penalty": 0.0, "max_tokens": 4096},
    "gen_po_multi_res": {
        "temperature": 0.8,
        "top_p": 1.0,
        "frequency_penalty": 0.0,
        "max_tokens": 4096,
    },
    "gen_mt": {"temperature": 0.0, "top_p": 1.0, "frequency_penalty": 0.0, "max_tokens": 4096},
    "gen_conv": {"temperature": 0.0, "top_p": 1.0, "frequency_penalty": 0.0, "max_tokens": 2048},
}


def built_params(monkeypatch, stage: str, tmp_path, model_path: str, **flags):
    """The response SamplingParams the stage builds (the run itself is skipped)."""
    steps = []

    def run(self, step, model_path, **options):
        steps.append(step)
        return Summary(stage)

    monkeypatch.setattr(EngineOptions, "run", run)
    src = tmp_path / "in.json"
    src.write_text(json.dumps([{"instruction": "Name a colour.", "response": "Blue."}]))
    out = str(tmp_path / f"{stage}_{len(list(tmp_path.iterdir()))}.json")
    if stage == "gen_conv":
        GenConv(
            model_path=model_path, total_prompts=1, output_folder=out, timestamp=1, **flags
        ).run()
    else:
        settings = {"gen_res": GenRes, "gen_po_multi_res": GenPoMultiRes, "gen_mt": GenMt}
        settings[stage](input_file=str(src), model_path=model_path, output_file=out, **flags).run()
    (step,) = steps
    params = step.assistant_params if stage in ("gen_mt", "gen_conv") else step.params
    return {k: getattr(params, k) for k in EMBEDDED}


@pytest.mark.parametrize("stage", list(ORIGINAL))
def test_embedded_response_defaults_only_without_a_model_path(
    stage, monkeypatch, tmp_path, smol_tokenizer, tiny_model_dir
):
    assert built_params(monkeypatch, stage, tmp_path, "") == EMBEDDED
    assert built_params(monkeypatch, stage, tmp_path, str(tiny_model_dir)) == ORIGINAL[stage]
    # A flag given on the embedded model is kept, the others still default.
    prefix = "response_" if stage in ("gen_mt", "gen_conv") else ""
    given = built_params(
        monkeypatch, stage, tmp_path, "", **{f"{prefix}temperature": 0.2, "max_tokens": 64}
    )
    assert given == {**EMBEDDED, "temperature": 0.2, "max_tokens": 64}


@pytest.mark.slow
def test_gen_mt_on_the_embedded_model_records_the_embedded_defaults(tmp_path, smol_tokenizer):
    """A real run (2 records, 2 turns): the sampling settings are recorded in the records
    and journal fingerprint, and the user turns keep theirs."""
    src = tmp_path / "res.json"
    src.write_text(
        json.dumps(
            [
                {"instruction": "What is the capital of France?", "response": "Paris."},
                {"instruction": "Name a primary colour.", "response": "Red is one."},
            ]
        )
    )
    GenMt(input_file=str(src), seed=7).run(EngineOptions(engine="hf"))
    records = read_records(tmp_path / "res_mt.json")
    assert len(records) == 2
    for r in records:
        configs = r["gen_mt_configs"]
        assert configs["response"] == {
            "temperature": 0.7,
            "top_p": 0.9,
            "repetition_penalty": 1.0,
            "frequency_penalty": 0.3,
        }
        assert configs["instruction"] == {
            "temperature": 1.0,
            "top_p": 1.0,
            "repetition_penalty": 1.0,
        }
        assert configs["max_tokens"] == 512
    # At least one conversation grew a second exchange with these settings.
    assert any(r.get("response_2") for r in records)


@pytest.mark.parametrize("script", ["magpie.sh", "magpie_example_po.sh"])
def test_driver_scripts_leave_the_embedded_settings_to_the_stages(script):
    """The bash drivers pass sampling only when given on their command line: the stage
    settings resolve the embedded model's defaults (one place), so the drivers carry no
    copy of them, and the default recipe resolves to them."""
    text = (REPO / "scripts" / script).read_text()
    assert "frequency_penalty" not in text and "default_res_temp" not in text
    ins, res = plan(None)  # the recipe magpie.sh runs with no arguments
    assert res.settings.sampling() == {k: EMBEDDED[k] for k in res.settings.sampling()}
