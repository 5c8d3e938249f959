"""Issue 14: reruns are safe. A finished output keeps its settings and input fingerprint
(`.magpie/<output name>.meta.json`) and is not silently kept or replaced; one run at a time
writes an output; a crash leaves no half file and no mix of two runs. Issue 24: the lock,
journal and meta files live in the hidden `.magpie/` folder, so an output folder holds
only outputs."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from magpie.records import InputError, Journal, overwriting, read_records, state_path


def stage_main(stage: str):
    spec = importlib.util.spec_from_file_location(f"exp_{stage}", REPO / "exp" / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def finished(out, settings, records=({"a": 1},)):
    journal = Journal(out, settings)
    for i, r in enumerate(records):
        journal.append(i, r)
    journal.finish(list(records))


def test_output_meta_keeps_settings_and_input_sha(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"instruction": "x"}\n')
    out = tmp_path / "out.json"
    settings = {"stage": "t", "input": str(src), "temperature": 0.0}
    finished(out, settings)
    meta = json.loads(state_path(out, ".meta.json").read_text())
    assert meta == {
        "settings": settings,
        "input_sha256": hashlib.sha256(b'{"instruction": "x"}\n').hexdigest(),
    }
    assert Journal(out, settings).complete  # same settings, same input: nothing to do
    with pytest.raises(InputError, match=r"out\.json: already made with other temperature"):
        Journal(out, {**settings, "temperature": 0.7})
    src.write_text('{"instruction": "y"}\n')
    with pytest.raises(InputError, match="other input file contents; pass --overwrite"):
        Journal(out, settings)
    assert read_records(out) == [{"a": 1}]  # nothing overwritten
    with overwriting():
        journal = Journal(out, settings)
    assert not journal.complete
    journal.finish([{"a": 2}])
    assert read_records(out) == [{"a": 2}] and Journal(out, settings).complete


def test_output_of_unknown_origin_is_refused(tmp_path):
    out = tmp_path / "out.json"
    out.write_text("[]\n")
    with pytest.raises(InputError, match=r"exists, with no \S*\.magpie/out\.json\.meta\.json"):
        Journal(out, {"stage": "t"})
    assert not Journal(out, {"stage": "t"}, overwrite=True).complete


def test_output_of_the_previous_version_asks_for_overwrite_once(tmp_path):
    """An output whose meta file is beside it (where the previous version kept it) is
    refused with a message naming that file and --overwrite; once replaced, the old meta
    file is gone and reruns find the output complete."""
    out = tmp_path / "out.json"
    out.write_text("[]\n")
    old = tmp_path / "out.json.meta.json"
    old.write_text(json.dumps({"settings": {"stage": "t"}, "input_sha256": None}))
    with pytest.raises(InputError) as e:
        Journal(out, {"stage": "t"})
    assert "made by an earlier magpie version" in str(e.value)
    assert str(old) in str(e.value) and "pass --overwrite once" in str(e.value)
    with overwriting():
        journal = Journal(out, {"stage": "t"})
    journal.finish([{"a": 1}])
    assert not old.exists() and Journal(out, {"stage": "t"}).complete


def test_gen_res_rerun_with_other_settings_is_refused_then_overwritten(tiny_model_dir, tmp_path):
    gen_res = stage_main("gen_res")
    src = tmp_path / "x_ins.json"
    src.write_text(json.dumps([{"id": 0, "instruction": "Say hi"}]))
    out = tmp_path / "x_ins_res.json"
    args = dict(input_file=str(src), model_path=str(tiny_model_dir), max_tokens=3)
    gen_res.main(**args)
    before = out.read_bytes()
    gen_res.main(**args)  # same settings: already complete
    with pytest.raises(InputError, match="already made with other max_tokens"):
        gen_res.main(**{**args, "max_tokens": 5})
    assert out.read_bytes() == before
    gen_res.main(**{**args, "max_tokens": 5}, overwrite=True)
    assert json.loads(state_path(out, ".meta.json").read_text())["settings"]["max_tokens"] == 5


def test_output_folder_holds_only_outputs_after_a_killed_and_resumed_run(tiny_model_dir, tmp_path):
    """gen_ins killed mid-run (its journal in .magpie/) and resumed, then gen_res on its
    output: the folder lists the two outputs and `.magpie`, which holds each output's
    lock, lock owner and meta file (the journals are gone)."""
    out = tmp_path / "job"
    args = [sys.executable, str(REPO / "exp" / "gen_ins.py"), "--model_path", str(tiny_model_dir)]
    args += ["--total_prompts", "200", "--n", "5", "--max_tokens", "6", "--batch_size", "4"]
    args += ["--output_folder", str(out), "--timestamp", "7", "--seed", "1"]
    ins = out / f"Magpie_{tiny_model_dir.name}_200_7_ins.json"
    journal = state_path(ins, ".journal.jsonl")
    assert journal.parent == out / ".magpie"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while proc.poll() is None and (not journal.exists() or journal.read_text().count("\n") < 20):
        assert time.time() < deadline
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed and not ins.exists()
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed from journal" in done.stdout
    assert [r["id"] for r in read_records(ins)] == list(range(200))
    res_args = [sys.executable, str(REPO / "exp" / "gen_res.py"), "--input_file", str(ins)]
    res_args += ["--model_path", str(tiny_model_dir), "--max_tokens", "2"]
    answered = subprocess.run(res_args, capture_output=True, text=True, timeout=300)
    assert answered.returncode == 0, answered.stderr
    res = out / f"{ins.stem}_res.json"
    assert sorted(p.name for p in out.iterdir()) == sorted([".magpie", ins.name, res.name])
    assert sorted(p.name for p in (out / ".magpie").iterdir()) == sorted(
        f"{o.name}{suffix}" for o in (ins, res) for suffix in (".lock", ".lock.owner", ".meta.json")
    )


HOLDER = """
import sys, time
from magpie.records import Journal
j = Journal(sys.argv[1], {"stage": "gen_res"})
j.append(0, {"x": 1})
print("holding", flush=True)
time.sleep(60)
"""


def test_second_run_on_the_same_output_names_the_holder_and_exits_2(tiny_model_dir, tmp_path):
    src = tmp_path / "x_ins.json"
    src.write_text(json.dumps([{"id": 0, "instruction": "Say hi"}]))
    out = tmp_path / "x_ins_res.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        journal_before = state_path(out, ".journal.jsonl").read_bytes()
        second = subprocess.run(
            [
                sys.executable,
                str(REPO / "exp" / "gen_res.py"),
                "--input_file",
                str(src),
                "--model_path",
                str(tiny_model_dir),
                "--max_tokens",
                "3",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert second.returncode == 2
        last = second.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "another run is writing it" in last
        assert f"pid {holder.pid} on " in last and "started " in last
        assert state_path(out, ".journal.jsonl").read_bytes() == journal_before  # untouched
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone (killed): the lock went with it, and a rerun resumes its journal.
    time.sleep(0.1)
    journal = Journal(out, {"stage": "gen_res"})
    assert journal.done == {0: {"x": 1}}
    journal.release()


# ---------------------------------------------------------------------------------------
# 9. A crash leaves no half file and no mix of two runs.


def test_pairs_crash_leaves_the_previous_split_whole(tmp_path, monkeypatch):
    import magpie.preference as preference

    out = tmp_path / "x_dpo"
    preference.write_split(out, [{"i": 1}, {"i": 2}], [{"i": 3}])
    calls = []

    def crash_on_test(path, records):
        calls.append(Path(path).name)
        if Path(path).name == "test.jsonl":
            raise KeyboardInterrupt  # killed between the two files
        return real(path, records)

    real = preference.write_records
    monkeypatch.setattr(preference, "write_records", crash_on_test)
    with pytest.raises(KeyboardInterrupt):
        preference.write_split(out, [{"i": 3}, {"i": 1}], [{"i": 2}])
    assert calls == ["train.jsonl", "test.jsonl"]
    assert read_records(out / "train.jsonl") == [{"i": 1}, {"i": 2}]
    assert read_records(out / "test.jsonl") == [{"i": 3}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_dpo"]  # no leftovers
