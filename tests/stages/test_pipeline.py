"""One pipeline (magpie.pipeline): a recipe runs the stages in order, each on the previous
one's output, with the records the stage scripts give when chained by hand; a killed run
rerun ends with the records of an uninterrupted one; bad recipes are refused up front."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO

import magpie
from magpie.pipeline import STAGES, plan
from magpie.records import InputError, read_records, state_path, write_records
from magpie.resources import RECIPES_DIR

PY = sys.executable


def load_exp(name: str):
    spec = importlib.util.spec_from_file_location(f"exp_{name}", REPO / "exp" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "created"} for r in records]


def recipe(model: Path, out: Path, total: int = 12) -> dict:
    """Every stage of the original's single-turn pipeline, small."""
    return {
        "model": str(model),
        "seed": 5,
        "timestamp": 1000,
        "output_dir": str(out),
        "batch_size": 4,
        "stages": [
            {"gen_ins": {"total_prompts": total, "n": 4, "max_tokens": 16}},
            {"gen_res": {"max_tokens": 32, "temperature": 0.8}},
            {"unitag": {"tag_mission": "language"}},
            {"concat": {"id_prefix": "run"}},
            {"gen_dis": {}},
            {"filter": {"config": "magpie"}},
        ],
    }


@pytest.mark.slow
def test_recipe_gives_the_records_of_the_stage_scripts_chained_by_hand(ending_model_dir, tmp_path):
    outputs = magpie.run(recipe(ending_model_dir, tmp_path / "pipeline"))
    assert list(outputs) == ["gen_ins", "gen_res", "unitag", "concat", "gen_dis", "filter"]

    # The same flags, stage by stage, through the exp/ scripts' entry points.
    hand = tmp_path / "hand"
    model, engine = str(ending_model_dir), {"batch_size": 4}
    load_exp("gen_ins").main(
        model_path=model, total_prompts=12, n=4, max_tokens=16, seed=5, timestamp=1000,
        output_folder=str(hand), **engine,
    )  # fmt: skip
    (ins,) = hand.glob("*_ins.json")
    load_exp("gen_res").main(
        input_file=str(ins), model_path=model, max_tokens=32, temperature=0.8, seed=5, **engine
    )
    res = ins.with_name(ins.stem + "_res.json")
    load_exp("unitag").main(input_file=str(res), tag_mission="language", model_path=model, seed=5)
    tagged = res.with_name(res.stem + "_language.json")
    load_exp("concat").main(str(tagged), id_prefix="run")
    (shared,) = hand.glob("run_sharegpt.jsonl")
    load_exp("gen_dis").main(input_file=str(shared))
    (dis,) = [p for p in hand.glob("*.json*") if p not in (ins, res, tagged, shared)]
    load_exp("filter").main(input_file=str(dis), config="magpie", seed=5)  # the run seed

    for name, path in outputs.items():
        by_hand = hand / path.name
        assert by_hand.is_file(), f"{name}: the scripts made no {path.name}"
        assert without_time(read_records(path)) == without_time(read_records(by_hand)), name
    # Real content went through: sampled instructions, answers, tags, ids, kept records.
    final = read_records(outputs["filter"])
    responses = read_records(outputs["gen_res"])
    assert len({r["instruction"] for r in responses}) > 8
    assert all("language" in r for r in read_records(outputs["unitag"]))
    assert all(r["conversation_id"].startswith("run_") for r in read_records(outputs["concat"]))
    assert all("min_neighbor_distance" in r for r in read_records(outputs["gen_dis"]))
    assert 0 < len(final) <= 12


def same_outputs(outputs: dict, by_hand: Path) -> None:
    """Every output of a recipe equals, record for record, the file of the same name the
    stages made by hand (a folder: each of its files)."""
    for name, path in outputs.items():
        mine = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        assert mine, name
        for file in mine:
            other = by_hand / file.relative_to(path.parent)
            assert without_time(read_records(file)) == without_time(read_records(other)), name


@pytest.mark.slow
def test_conversation_and_preference_stages_chain_in_a_recipe_as_by_hand(
    ending_model_dir, tmp_path
):
    model = str(ending_model_dir)
    turns = {"max_tokens": 16, "response_temperature": 0.8, "batch_size": 4}
    conv = magpie.run(
        {
            "model": model,
            "seed": 3,
            "output_dir": str(tmp_path / "conv"),
            "stages": [
                {"gen_conv": {"total_prompts": 6, "n_turns": 1, "timestamp": 1000, **turns}},
                {"gen_mt": {"num_turns": 2, **turns}},
            ],
        }
    )
    hand = tmp_path / "conv_hand"
    first = magpie.GenConv(
        model_path=model, total_prompts=6, n_turns=1, timestamp=1000, seed=3,
        output_folder=str(hand), max_tokens=16, response_temperature=0.8,
    ).run(magpie.EngineOptions(batch_size=4))  # fmt: skip
    magpie.GenMt(
        input_file=str(first), model_path=model, num_turns=2, seed=3, max_tokens=16,
        response_temperature=0.8,
    ).run(magpie.EngineOptions(batch_size=4))  # fmt: skip
    same_outputs(conv, hand)
    grown = read_records(conv["gen_mt"])
    assert any(r.get("response_2") for r in grown)  # a second exchange was made

    instructions = [{"instruction": f"Name {k} colours of the sea."} for k in range(2, 6)]
    for folder in ("po", "po_hand"):
        write_records(tmp_path / folder / "ins.jsonl", instructions)
    po = magpie.run(
        {
            "model": model,
            "seed": 3,
            "stages": [
                {"gen_po_multi_res": {"input_file": str(tmp_path / "po" / "ins.jsonl"),
                                      "num_samples": 3, "max_tokens": 16}},
                {"gen_po_rewards": {"reward_model": "judge", "judge_model_path": model}},
                {"gen_po_pairs": {"test_size": 1}},
            ],
        }
    )  # fmt: skip
    hand = tmp_path / "po_hand"
    res = magpie.GenPoMultiRes(
        input_file=str(hand / "ins.jsonl"), model_path=model, num_samples=3, max_tokens=16, seed=3
    ).run()
    rewards = magpie.GenPoRewards(
        input_file=str(res), reward_model="judge", judge_model_path=model
    ).run()
    magpie.GenPoPairs(input_file=str(rewards), test_size=1, seed=3).run()
    same_outputs(po, hand)
    pairs = read_records(po["gen_po_pairs"] / "train.jsonl")
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)


def run_args(path: Path) -> list[str]:
    return [PY, "-m", "magpie", "run", str(path)]


@pytest.mark.slow
def test_a_killed_pipeline_rerun_gives_the_records_of_an_uninterrupted_one(
    ending_model_dir, tmp_path
):
    def write(out: Path) -> Path:
        path = tmp_path / f"{out.name}.yaml"
        spec = recipe(ending_model_dir, out, total=48)
        spec["stages"] = spec["stages"][:3]
        spec["batch_size"] = 2
        path.write_text(yaml.safe_dump(spec))
        return path

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ref = subprocess.run(run_args(write(tmp_path / "ref")), capture_output=True, text=True, env=env)
    assert ref.returncode == 0, ref.stderr[-2000:]
    (ref_ins,) = (tmp_path / "ref").glob("*_ins.json")

    out, kills = tmp_path / "out", 0
    ins = out / ref_ins.name
    res = ins.with_name(ins.stem + "_res.json")
    # Killed once while instructions are made, once while responses are.
    for journal, threshold in ((state_path(ins, ".journal.jsonl"), 10),
                               (state_path(res, ".journal.jsonl"), 12)):  # fmt: skip
        proc = subprocess.Popen(
            run_args(write(out)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        deadline = time.time() + 300
        while proc.poll() is None:
            assert time.time() < deadline
            lines = journal.read_bytes().count(b"\n") if journal.exists() else 0
            if lines >= threshold:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.02)
        proc.wait()
    assert kills == 2
    assert ins.exists() and not res.exists()  # the first stage had finished, the second not
    done = subprocess.run(run_args(write(out)), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "already complete" in done.stdout  # gen_ins skipped
    assert "resumed from journal" in done.stdout  # gen_res resumed
    for ref_file in sorted((tmp_path / "ref").glob("*.json")):
        mine = read_records(out / ref_file.name)
        assert without_time(mine) == without_time(read_records(ref_file)), ref_file.name
    tagged = read_records(next((tmp_path / "ref").glob("*_language.json")))
    assert len(tagged) == 48 and len({r["response"] for r in tagged}) > 30


def test_shipped_recipes_name_only_flags_their_stages_have():
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    assert "default" in names and len(names) >= 30
    for name in names:
        steps = plan(name)
        assert [s.name for s in steps][:2] == ["gen_ins", "gen_res"], name


def test_shared_keys_reach_every_stage_that_has_them_unless_it_sets_its_own():
    steps = plan(
        {
            "model": "some/model",
            "seed": 9,
            "engine": "hf",
            "stages": [{"gen_ins": {"top_p": 0.5}}, {"gen_res": {"seed": 1}}, {"concat": {}}],
        }
    )
    ins, res, concat = steps
    assert (ins.settings.model_path, ins.settings.seed, ins.settings.top_p) == (
        "some/model",
        9,
        0.5,
    )
    assert (res.settings.model_path, res.settings.seed) == ("some/model", 1)
    assert ins.engine.engine == res.engine.engine == "hf"
    assert not hasattr(concat.settings, "seed")  # concat has no seed: not given one


def test_embedded_defaults_are_resolved_by_the_stage_settings():
    ins, res = plan(None)  # the default job
    assert ins.settings.sampling() == {
        "total_prompts": 32, "top_p": 0.9, "max_tokens": 256, "temperature": 1.0
    }  # fmt: skip
    assert res.settings.sampling() == {
        "temperature": 0.7, "top_p": 0.9, "frequency_penalty": 0.3, "max_tokens": 512
    }  # fmt: skip
    ins, res = plan(None, model_path="meta-llama/Meta-Llama-3-8B-Instruct")
    assert ins.settings.sampling()["total_prompts"] == 1000
    assert res.settings.sampling()["temperature"] == 0.0


def test_overrides_reach_the_named_stage():
    ins, res = plan("llama3.1-8b", gen_res__top_p=0.5, gen_ins__n=3, seed=2)
    assert (ins.settings.n, ins.settings.top_p, ins.settings.sanitize) == (3, 1, True)
    assert (res.settings.top_p, res.settings.temperature, res.settings.seed) == (0.5, 0.6, 2)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"stages": [{"gen_res": {"top_k": 3}}]}, r"stage 1: gen_res has no setting 'top_k'"),
        ({"stages": [{"gen_rez": {}}]}, r"stage 1: no stage 'gen_rez'"),
        ({"colour": 1, "stages": [{"gen_ins": {}}]}, r"unknown shared key 'colour'"),
        ({"stages": []}, r"`stages` must be a non-empty list"),
        ({"stages": [{"gen_ins": {}, "gen_res": {}}]}, r"stage 1 must be \{name: \{flags\}\}"),
    ],
)
def test_bad_recipes_are_refused_before_anything_runs(bad, message):
    with pytest.raises(InputError, match=message):
        plan(bad)


def test_magpie_run_refuses_a_bad_recipe_with_one_line_and_exit_2(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("stages:\n  - gen_ins: {temprature: 1}\n")
    done = subprocess.run([PY, "-m", "magpie", "run", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: recipe: stage 1: gen_ins has no setting 'temprature'")
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]  # nothing was made


def test_every_stage_has_a_command_and_is_importable_from_magpie():
    for name, cls in STAGES.items():
        assert getattr(magpie, cls.__name__) is cls
        assert cls.__doc__, name
    done = subprocess.run([PY, "-m", "magpie", "gen_res", "--help"], capture_output=True, text=True)
    shown = done.stdout + done.stderr  # fire writes its help to stderr without a terminal
    assert done.returncode == 0
    assert "--frequency_penalty" in shown and "0.3 on the embedded model" in shown


def magpie_sh(script: str, args: list[str], tmp_path: Path, **env: str):
    environ = {**os.environ, "DATA_DIR": str(tmp_path), "TIMESTAMP": "1700000000", **env}
    return subprocess.run(
        ["bash", str(REPO / "scripts" / script), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_magpie_sh_and_a_model_script_keep_the_original_command_line(ending_model_dir, tmp_path):
    """magpie.sh's positional arguments and environment reach the stages; a per-model
    script runs its recipe, with an argument given replacing the recipe's value."""
    small = {"N": "4", "BATCH_SIZE": "4", "INS_EXTRA_ARGS": "--max_tokens 16"}
    done = magpie_sh(
        "magpie.sh",
        [str(ending_model_dir), "8", "0.95", "0.9", "1", "0.8"],
        tmp_path / "plain",
        **small,
        RES_EXTRA_ARGS="--max_tokens 32",
        SEED="7",
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    name = ending_model_dir.name
    job = tmp_path / "plain" / f"{name}_topp0.95_temp0.9_1700000000"  # the original's folder
    ins = read_records(job / f"Magpie_{name}_8_1700000000_ins.json")
    res = read_records(job / f"Magpie_{name}_8_1700000000_ins_res.json")
    assert len(ins) == len(res) == 8
    assert ins[0]["gen_input_configs"] | {"input_generator": None} == {
        "temperature": 0.9, "top_p": 0.95, "input_generator": None, "seed": 7
    }  # fmt: skip
    configs = next(r["gen_response_configs"] for r in res if r["gen_response_configs"])
    assert (configs["temperature"], configs["top_p"], configs["max_tokens"]) == (0.8, 1, 32)
    assert "[run] gen_res:" in (job / "magpie.log").read_text()

    # magpie-llama3.1-8b.sh's recipe: instruction temperature 0.8, responses top_p 0.9 and
    # temperature 0.6, sanitised instructions; here on another model with 8 prompts.
    done = magpie_sh(
        "magpie-llama3.1-8b.sh", [str(ending_model_dir), "8"], tmp_path / "llama", **small
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    job = tmp_path / "llama" / f"{name}_topp1_temp0.8_1700000000"
    ins = read_records(job / f"Magpie_{name}_8_1700000000_ins.json")
    res = read_records(job / f"Magpie_{name}_8_1700000000_ins_res.json")
    assert ins[0]["gen_input_configs"]["temperature"] == 0.8
    assert all("instruction_sanitize_class_num" in r for r in ins)  # --sanitize ran
    configs = next(r["gen_response_configs"] for r in res if r["gen_response_configs"])
    assert (configs["temperature"], configs["top_p"]) == (0.6, 0.9)


def test_save_as_jsonl_writes_every_record_file_as_json_lines(ending_model_dir, tmp_path):
    """`save_as: jsonl` (the choice for large runs) reaches each stage that writes a
    record file: the same records, one per line, in files named .jsonl."""
    stages = [
        {"gen_ins": {"total_prompts": 8, "n": 4, "max_tokens": 16}},
        {"gen_res": {"max_tokens": 24, "temperature": 0.8}},
        {"unitag": {"tag_mission": "language"}},
    ]
    base = {"model": str(ending_model_dir), "seed": 3, "timestamp": 1000, "batch_size": 4}
    as_json = magpie.run({**base, "output_dir": str(tmp_path / "json"), "stages": stages})
    as_jsonl = magpie.run(
        {**base, "output_dir": str(tmp_path / "jsonl"), "save_as": "jsonl", "stages": stages}
    )
    for stage in ("gen_ins", "gen_res", "unitag"):
        assert as_json[stage].suffix == ".json" and as_jsonl[stage].suffix == ".jsonl"
        assert as_jsonl[stage].name == as_json[stage].with_suffix(".jsonl").name
        lines = as_jsonl[stage].read_text(encoding="utf-8").splitlines()
        from_lines = [json.loads(line) for line in lines]
        array = json.loads(as_json[stage].read_text(encoding="utf-8"))
        assert len(lines) == len(array) == 8
        assert without_time(from_lines) == without_time(array), stage
