"""The Ray executor on a real local Ray cluster (127.0.0.1): the same records as the local
executor, on the embedded model with two replicas; a replica killed mid-run and a driver
killed mid-run both end with exactly the expected records, text included.

The local executor is the reference: its records are made in one process by the code the
rest of the suite checks. These run in float32 (the faster exact setting here); the
default bf16, exact through the batch-invariant attention (magpie.engines.invariant), is
checked between 1 and 2 replicas in tests/engines/test_batch_invariance.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from magpie.engines import EngineOptions
from magpie.instructions import InstructionJob
from magpie.models import DEFAULT_MODEL
from magpie.profiles import get_profile
from magpie.records import InputError, read_records, state_path
from magpie.responses import ResponseJob

pytestmark = pytest.mark.slow

# The settings of `response_job` below, in full: without a model path the CLI would use
# the embedded model's defaults (magpie.responses.EMBEDDED_RESPONSE_DEFAULTS) otherwise.
RES_ARGS = ["--temperature", "0.7", "--top_p", "0.9", "--frequency_penalty", "0"]
RES_ARGS += ["--seed", "3", "--dtype", "float32"]


def without_time(records: list[dict]) -> list[dict]:
    """Records less `created` (the wall clock at which each was made)."""
    return [{k: v for k, v in r.items() if k != "created"} for r in records]


@pytest.fixture(scope="module")
def smol_profile(smol_tokenizer):
    return get_profile(DEFAULT_MODEL, smol_tokenizer)


def instruction_job(smol_profile, out: Path) -> InstructionJob:
    return InstructionJob(
        smol_profile,
        out,
        model_name=DEFAULT_MODEL,
        total_prompts=16,
        n=4,
        max_tokens=40,
        top_p=0.9,
        seed=7,
    )


@pytest.fixture(scope="module")
def instructions(tmp_path_factory, smol_profile) -> Path:
    """16 instructions made by the local executor (the input of the response tests)."""
    out = tmp_path_factory.mktemp("ins") / "ins.json"
    job = instruction_job(smol_profile, out)
    EngineOptions(dtype="float32").run(job, "", seed=7)
    return out


def response_job(smol_profile, src: Path, out: Path) -> ResponseJob:
    return ResponseJob(
        smol_profile,
        src,
        out,
        model_name=DEFAULT_MODEL,
        temperature=0.7,
        top_p=0.9,
        max_tokens=48,
        seed=3,
    )


@pytest.fixture(scope="module")
def local_responses(tmp_path_factory, smol_profile, instructions) -> list[dict]:
    out = tmp_path_factory.mktemp("res") / "local_res.json"
    EngineOptions(dtype="float32").run(response_job(smol_profile, instructions, out), "", seed=3)
    return read_records(out)


def test_gen_ins_on_two_replicas_equals_local(
    ray_cluster, smol_profile, instructions, tmp_path, capsys
):
    out = tmp_path / "ray_ins.json"
    job = instruction_job(smol_profile, out)
    opts = EngineOptions(dtype="float32", executor="ray", num_replicas=2)
    os.environ["MAGPIE_RAY_CHUNK_SIZE"] = "1"  # 4 rounds: 4 chunks over 2 replicas
    try:
        summary = opts.run(job, "", seed=7)
    finally:
        del os.environ["MAGPIE_RAY_CHUNK_SIZE"]
    assert "ray replicas: r0" in capsys.readouterr().out and summary.records_out == 16
    local, ray = read_records(instructions), read_records(out)
    assert [r["id"] for r in ray] == list(range(16))
    texts = [r["instruction"] for r in local]
    assert len(set(texts)) == 16 and all(texts)  # real, varied instructions
    assert without_time(ray) == without_time(local)


def test_gen_res_on_two_replicas_equals_local(
    ray_cluster, smol_profile, instructions, local_responses, tmp_path, capsys
):
    out = tmp_path / "ray_res.json"
    opts = EngineOptions(dtype="float32", executor="ray", num_replicas=2)
    os.environ["MAGPIE_RAY_CHUNK_SIZE"] = "3"
    try:
        opts.run(response_job(smol_profile, instructions, out), "", seed=3)
    finally:
        del os.environ["MAGPIE_RAY_CHUNK_SIZE"]
    rates = capsys.readouterr().out
    assert "r0 " in rates and "r1 " in rates  # both replicas made records
    answered = [r for r in local_responses if r["response_flag"] != "skipped"]
    assert len(answered) >= 12 and len({r["response"] for r in answered}) == len(answered)
    assert read_records(out) == local_responses


# ------------------------------------------------------------- faults (separate processes)
def gen_res_command(src: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "exp" / "gen_res.py"),
        "--input_file",
        str(src),
        "--output_file",
        str(out),
        "--max_tokens",
        "48",
        *RES_ARGS,
        *extra,
    ]


def journal_entries(out: Path) -> int:
    journal = state_path(out, ".journal.jsonl")
    return max(0, len(journal.read_text().splitlines()) - 1) if journal.exists() else 0


def busy_replicas() -> list[int]:
    """Pids of Ray replica processes working on a chunk (their title is set by Ray)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(
                b"ray::Replica.make"
            ):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def wait_for(condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def fault_env() -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MAGPIE_RAY_CHUNK_SIZE": "2"}
    env.pop("RAY_ADDRESS", None)
    return env


def test_replica_killed_mid_run_loses_and_doubles_nothing(instructions, local_responses, tmp_path):
    out = tmp_path / "res.json"
    cmd = gen_res_command(instructions, out, "--executor", "ray", "--num_replicas", "2")
    run = subprocess.Popen(
        cmd, env=fault_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for(lambda: journal_entries(out) >= 2, 300, "a first committed chunk")
        victim = wait_for(busy_replicas, 60, "a replica at work")[0]
        os.kill(victim, signal.SIGKILL)
        log, _ = run.communicate(timeout=600)
    finally:
        run.kill()
    assert run.returncode == 0, log
    assert "died" in log and "goes back in the queue" in log  # the kill hit a chunk
    assert read_records(out) == local_responses


def test_driver_killed_mid_run_resumes_with_exactly_the_expected_records(
    instructions, local_responses, tmp_path
):
    out = tmp_path / "res.json"
    cmd = gen_res_command(instructions, out, "--executor", "ray", "--num_replicas", "2")
    run = subprocess.Popen(
        cmd,
        env=fault_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: journal_entries(out) >= 4, 300, "two committed chunks")
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the driver and the cluster it started
        run.wait()
    committed = journal_entries(out)
    assert 4 <= committed < 16 and not out.exists()
    again = subprocess.run(cmd, env=fault_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"{committed} resumed from journal" in again.stdout
    assert read_records(out) == local_responses


def test_a_model_that_cannot_load_stops_the_run_with_its_error(
    ray_cluster, smol_profile, instructions, tmp_path
):
    from magpie.ray_executor import RayExecutor

    def failing_load():  # nested: pickled by value, replicas cannot import this module
        raise InputError("model nowhere/at-all: not found")

    executor = RayExecutor(num_replicas=2)
    with pytest.raises(InputError, match=r"^model nowhere/at-all: not found$"):
        executor.run(response_job(smol_profile, instructions, tmp_path / "r.json"), failing_load)
    executor.close()
    assert not (tmp_path / "r.json").exists()
