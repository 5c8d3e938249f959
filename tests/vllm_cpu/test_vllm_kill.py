"""`exp/gen_ins.py --engine vllm` killed with SIGKILL mid-run, then resumed: exactly the
records, text included, of an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from vllm_settings import DTYPE, SECOND_ENGINE_ENV

from magpie.instructions import InstructionJob, instruction_file_name
from magpie.models import DEFAULT_MODEL
from magpie.records import read_records, state_path

REPO = Path(__file__).resolve().parents[2]
TOTAL, N, SEED, TIMESTAMP, MAX_TOKENS = 48, 4, 21, 9, 48
CHUNK = 8  # samples per LLM.generate call in the killed run: 6 calls of 2 rounds


def journal_records(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)  # minus the settings line
    except FileNotFoundError:
        return 0


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (vLLM's engine core and worker), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def job(path: Path) -> InstructionJob:
    from magpie.models import load_tokenizer
    from magpie.profiles import get_profile

    profile = get_profile(DEFAULT_MODEL, load_tokenizer(""))
    return InstructionJob(
        profile,
        path,
        model_name=DEFAULT_MODEL,
        total_prompts=TOTAL,
        n=N,
        max_tokens=MAX_TOKENS,
        seed=SEED,
    )


def test_sigkill_then_resume_gives_the_uninterrupted_records(vllm_engine, tmp_path, timings):
    out = tmp_path / "killed"
    final = out / instruction_file_name(DEFAULT_MODEL, TOTAL, TIMESTAMP)
    journal = state_path(final, ".journal.jsonl")
    args = [sys.executable, str(REPO / "exp" / "gen_ins.py"), "--engine", "vllm"]
    args += ["--total_prompts", str(TOTAL), "--n", str(N), "--max_tokens", str(MAX_TOKENS)]
    args += ["--top_p", "1.0"]  # job()'s; gen_ins would use 0.9 on the embedded model
    args += ["--seed", str(SEED), "--timestamp", str(TIMESTAMP), "--output_folder", str(out)]
    args += ["--dtype", DTYPE]  # the session engine's
    env = {**os.environ, "MAGPIE_VLLM_CHUNK_SIZE": str(CHUNK), **SECOND_ENGINE_ENV}
    log = tmp_path / "killed.log"
    start = time.monotonic()
    with open(log, "wb") as f:
        proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 900  # an engine start is 100-200 s on 2 busy cores
        while journal_records(journal) < CHUNK and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        assert proc.poll() is None, log.read_text()[-3000:]
        for pid in [proc.pid, *descendants(proc.pid)]:  # the CLI and vLLM's processes
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    timings["killed CLI run (engine start + first chunks)"] = time.monotonic() - start
    killed_at = journal_records(journal)
    assert CHUNK <= killed_at < TOTAL and not final.exists()
    first_lines = journal.read_text().splitlines()[1 : CHUNK + 1]
    assert all(json.loads(line)["record"]["instruction"] is not None for line in first_lines)

    resumed = job(final).run(vllm_engine)  # the same command's job, in-process
    assert 0 < resumed.resumed < TOTAL
    uninterrupted = tmp_path / "straight" / final.name
    job(uninterrupted).run(vllm_engine)

    got, want = read_records(final), read_records(uninterrupted)
    assert [r["id"] for r in got] == list(range(TOTAL))
    strip = lambda rs: [{k: v for k, v in r.items() if k != "created"} for r in rs]  # noqa: E731
    assert strip(got) == strip(want)
    assert len({r["instruction"] for r in got}) >= TOTAL * 0.75
