"""Skills tasks through the executor: a Ray run (2 replicas on a local cluster) gives the
records of a local run, and a run killed (SIGKILL) mid-way and rerun gives the records
of an uninterrupted one, text included.

The model is a tiny random Llama (fast on CPU; bfloat16, whose batch-invariant attention
makes a row's numbers independent of its batch: a random model's flat distributions would
turn float32's batch-dependent rounding into other tokens) whose greedy judge rates 1,
so each round goes through questions, their validation and answers (its answers run to
max_tokens and are rejected as unfinished: every text lands in generation_rejected.jsonl).
The local run is the reference; its first round's questions are also made here directly
with the engine, from the seeds the design names (item_seeds(seed, "skills/1", k, n)).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_llama

from magpie.records import read_records

TASKS = REPO / "tasks"
OUTPUTS = ("generated.jsonl", "generation_rejected.jsonl", "generation_summary.json")


@pytest.fixture(scope="module")
def judging_model_dir(tmp_path_factory, smol_tokenizer) -> Path:
    """A tiny random model (seed 1) whose greedy judge answers rating 1 (seed 1, not
    conftest's seed-0 tiny_model_dir: that one's judge answers another rating)."""
    path = tmp_path_factory.mktemp("tiny-judge")
    tiny_llama(smol_tokenizer, seed=1).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path


def task_file(folder: Path, model_dir: Path) -> Path:
    task = yaml.safe_load((TASKS / "skills_freeform.yaml").read_text())
    task.update(
        model_path=str(model_dir),
        dtype="bfloat16",  # batch-invariant: a row's numbers do not depend on its batch
        num_samples=50,  # more than two rounds make: both rounds run
        max_iterations=2,
        num_icl_examples_per_prompt=2,  # 4 seeds: 2 prompts a round
        num_questions_to_generate_per_prompt=2,
        max_tokens=16,
        tag=False,
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "skills.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def outputs(out: Path) -> dict:
    """The generation's outputs (an empty file: no records), less the summary's
    fingerprint (it names the task file, in another folder for each run)."""
    folder = out / "short_answers"
    found = {
        name: read_records(folder / name) if (folder / name).stat().st_size else []
        for name in OUTPUTS
    }
    [summary] = found["generation_summary.json"]
    assert summary.pop("fingerprint")["seed"] == 1
    return found


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, judging_model_dir) -> dict:
    from magpie.tasks import run_task

    root = tmp_path_factory.mktemp("local")
    summary = run_task(task_file(root, judging_model_dir), root / "out")
    return {"summary": summary, **outputs(root / "out")}


def direct_first_round_questions(model_dir: Path, task: dict) -> list[str]:
    """Round 1's questions made with the engine alone, no step or executor: its prompts
    (the builder's few-shot conversations), sample j of prompt k seeded item_seeds(seed,
    "skills/1", [k], n) + j, at the builder's question settings."""
    from magpie.chat_template import chat_prompt
    from magpie.engines import EngineOptions
    from magpie.engines.base import SamplingParams, item_seeds
    from magpie.models import canonical_name
    from magpie.profiles import get_profile
    from magpie.skills import SkillsBuilder, question_schema

    engine = EngineOptions(dtype=task["dtype"]).load(str(model_dir), seed=task["seed"])
    profile = get_profile(canonical_name(str(model_dir)), engine.tokenizer)
    _, chats = SkillsBuilder(engine, profile, task, seed=task["seed"]).question_prompts()
    n = task["num_questions_to_generate_per_prompt"]
    params = SamplingParams(
        n=n,
        temperature=0.7,
        top_p=0.95,
        max_tokens=96,
        stop=list(profile.response_stop_tokens),
        stop_token_ids=list(profile.response_stop_token_ids),
        seed=task["seed"],
        json_schema=question_schema([s["question"] for s in task["seed_examples"]]),
    )
    prompts = [chat_prompt(engine.tokenizer, c) for c in chats]
    out = engine.generate(
        prompts, params, item_seeds(task["seed"], "skills/1", range(len(chats)), n)
    )
    return [json.loads(c.text)["question"].strip() for cs in out for c in cs]


def test_local_run_goes_through_every_step_with_the_expected_questions(
    local_run, judging_model_dir, tmp_path
):
    task = yaml.safe_load(task_file(tmp_path, judging_model_dir).read_text())
    steps = local_run["summary"]["steps"]
    # Two rounds of 2 prompts x 2 questions, each judged 1 and answered.
    assert steps["generate_questions"] == {"made": 8, "kept": 8, "rejected": 0}
    assert steps["validate_question"] == {"made": 8, "kept": 8, "rejected": 0}
    assert steps["generate_answer"]["made"] == 8
    rejected = local_run["generation_rejected.jsonl"]
    answered = [r for r in rejected if r["step"] == "generate_answer"]
    assert len(answered) == 8 and all(r["answer"] for r in answered)
    assert all(r["ratings"] == {"validate_question": 1} for r in answered)
    questions = [r["question"] for r in answered]
    direct = direct_first_round_questions(judging_model_dir, task)
    assert len(direct) == 4 and questions[:4] == direct  # round 1, in order


@pytest.mark.slow
def test_skills_on_two_ray_replicas_equal_local(
    ray_cluster, local_run, judging_model_dir, tmp_path, capsys
):
    from magpie.engines import EngineOptions
    from magpie.tasks import run_task

    os.environ["MAGPIE_RAY_CHUNK_SIZE"] = "1"  # every call's prompts over both replicas
    try:
        options = EngineOptions(executor="ray", num_replicas=2)
        summary = run_task(
            task_file(tmp_path, judging_model_dir), tmp_path / "out", engine_options=options
        )
    finally:
        del os.environ["MAGPIE_RAY_CHUNK_SIZE"]
    printed = capsys.readouterr().out
    assert "ray replicas: r0" in printed and "r1 " in printed  # both replicas made entries
    assert summary == local_run["summary"]
    ray = outputs(tmp_path / "out")
    for name in OUTPUTS:
        assert ray[name] == local_run[name], name
    texts = [r["answer"] for r in ray["generation_rejected.jsonl"] if r.get("answer")]
    assert len(texts) == 8 and len(set(texts)) == 8  # real, varied texts compared


# ------------------------------------------------------------- SIGKILL and rerun
def journal_keys(out: Path) -> list:
    """The keys of the journal's complete entries (none if there is no journal)."""
    found = list(out.rglob("generated.jsonl.journal.jsonl"))
    if not found:
        return []
    raw = found[0].read_bytes()
    lines = raw[: raw.rfind(b"\n") + 1].decode().split("\n")[1:]
    return [json.loads(line)["key"] for line in lines if line.strip()]


def run_command(path: Path, out: Path) -> list[str]:
    code = f"from magpie.tasks import run_task; run_task({str(path)!r}, {str(out)!r})"
    return [sys.executable, "-c", code]


def test_skills_killed_mid_run_and_rerun_give_the_uninterrupted_records(
    local_run, judging_model_dir, tmp_path
):
    path, out = task_file(tmp_path, judging_model_dir), tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kills = []
    # Kill inside round 1 (its questions made, the judge at work), then inside round 2.
    for threshold in (3, 14):
        proc = subprocess.Popen(
            run_command(path, out),
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 600
        while len(journal_keys(out)) < threshold and proc.poll() is None:
            assert time.time() < deadline
            time.sleep(0.05)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills.append(len(journal_keys(out)))
        proc.wait()
        keys = journal_keys(out)
        assert len(keys) == len(set(keys))  # nothing made twice
    assert kills and kills[0] < 22  # killed before the end (2 rounds: 2 x 11 entries)
    assert not (out / "short_answers" / "generated.jsonl").exists()
    again = subprocess.run(
        run_command(path, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert again.returncode == 0, again.stderr
    done = outputs(out)
    for name in OUTPUTS:
        assert done[name] == local_run[name], name
    assert json.loads((out / "short_answers" / "summary.json").read_text()) == local_run["summary"]
