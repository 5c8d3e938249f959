"""The recipes are consumable: TRL trains 2 SFT steps and 2 DPO steps on CPU, on a tiny
random model, from files the pipeline itself wrote (ShareGPT export, preference pairs),
through the recipes' own YAML as `trl sft|dpo --config` reads it. Axolotl is not
installed here, so its recipes are checked against the ShareGPT file they name."""

from __future__ import annotations

import json
from pathlib import Path

import trl  # noqa: F401  (.ci/run installs it: a broken install fails, never skips)
import yaml
from conftest import REPO

RECIPES = REPO / "recipes"
QUICK = {  # what turns a recipe into a 2-step smoke run on CPU
    "max_steps": 2,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "max_length": 128,
    "eval_strategy": "no",
    "save_strategy": "no",
    "logging_steps": 1,
    "use_cpu": True,
    "bf16": False,
    "report_to": "none",
    "dataloader_num_workers": 0,
}


def parse_recipe(module, recipe: Path, tmp_path: Path, **overrides):
    """The recipe as `trl <cmd> --config` parses it, with `overrides` applied, refusing
    keys that TRL does not know (other than the ones it hands to accelerate)."""
    config = yaml.safe_load(recipe.read_text())
    config.update(overrides)
    path = tmp_path / recipe.name
    path.write_text(yaml.safe_dump(config))
    *parsed, config_left, cli_left = module.make_parser().parse_args_and_config(
        ["--config", str(path)], return_remaining_strings=True, separate_remaining_strings=True
    )
    unknown = [a for a in config_left[::2] if a not in ("--accelerate_config", "--num_processes")]
    assert not unknown and not cli_left, f"{recipe.name}: keys TRL does not know: {unknown}"
    return parsed


def sharegpt_records() -> list[dict]:
    topics = ["tea", "rivers", "prime numbers", "bicycles", "jazz", "volcanoes"]
    return [
        {
            "id": i,
            "pre_query_template": "<|im_start|>user\n",
            "instruction": f"Tell me one fact about {t}.",
            "response": f"Here is a fact about {t}: it is interesting.",
            "gen_input_configs": {"temperature": 1.0, "top_p": 1.0},
            "task_category": "Information seeking",
            "input_quality": "good",
        }
        for i, t in enumerate(topics)
    ]


def scored_records() -> list[dict]:
    out = []
    for i, r in enumerate(sharegpt_records()):
        responses = [r["response"], "I do not know.", f"{r['instruction']} Sure. Tea."]
        out.append(
            {
                "uuid": f"u{i}",
                "instruction": r["instruction"],
                "responses": responses,
                "rewards_armorm": [{"score": s} for s in (0.3, -0.2, 0.1)],
            }
        )
    return out


def test_sft_two_steps_on_the_sharegpt_export(tiny_model_dir, tmp_path):
    from trl.scripts import sft

    from magpie.sharegpt import concatenate

    shard = tmp_path / "shard_ins_res.json"
    shard.write_text(json.dumps(sharegpt_records()))
    sharegpt, messages = tmp_path / "magpie_sharegpt.jsonl", tmp_path / "magpie_messages.jsonl"
    concatenate([str(shard)], sharegpt, messages_file=messages, progress=False)

    # Axolotl recipes: their dataset mapping fits the ShareGPT file the toolkit writes.
    rows = [json.loads(line) for line in sharegpt.read_text().splitlines()]
    for name in ("Llama-3-8B-Magpie-Align-SFT.yaml", "SmolLM2-135M-Magpie-SFT.yaml"):
        (ds,) = yaml.safe_load((RECIPES / name).read_text())["datasets"]
        assert ds["type"] == "chat_template"
        mapping, roles = ds["message_property_mappings"], ds["roles"]
        known = {v for values in roles.values() for v in values}
        for row in rows:
            for turn in row[ds["field_messages"]]:
                assert turn[mapping["role"]] in known and isinstance(turn[mapping["content"]], str)

    out = tmp_path / "sft-out"
    parsed = parse_recipe(
        sft,
        RECIPES / "SmolLM2-135M-Magpie-SFT-trl.yaml",
        tmp_path,
        model_name_or_path=str(tiny_model_dir),
        datasets=[{"path": "json", "data_files": str(messages), "split": "train"}],
        output_dir=str(out),
        **QUICK,
    )
    sft.main(*parsed)
    assert (out / "model.safetensors").exists()


def test_dpo_two_steps_on_the_pairs(tiny_model_dir, tmp_path):
    from trl.scripts import dpo

    from magpie.preference import build_pairs

    scored = tmp_path / "x_5res_armorm.json"
    scored.write_text(json.dumps(scored_records()))
    result = build_pairs(scored, test_size=0.2, seed=1)
    assert result["train"] == 4 and result["test"] == 2
    out = tmp_path / "dpo-out"
    parsed = parse_recipe(
        dpo,
        RECIPES / "SmolLM2-135M-Magpie-DPO.yaml",
        tmp_path,
        model_name_or_path=str(tiny_model_dir),
        dataset_name=result["output_dir"],
        output_dir=str(out),
        **QUICK,
    )
    dpo.main(*parsed)
    assert (out / "model.safetensors").exists()


def test_llama3_dpo_recipe_parses_as_trl_reads_it(tmp_path):
    from trl.scripts import dpo

    script, training, model, data = parse_recipe(
        dpo, RECIPES / "Llama-3-8B-Magpie-Align-DPO.yaml", tmp_path, bf16=False
    )
    assert training.beta == 0.01 and training.max_length == 2048
    assert model.model_name_or_path.endswith("Llama-3-8B-Magpie-Align-SFT")
    assert data.datasets[0].columns == ["chosen", "rejected"]
