"""Issue 14: reruns are safe. A finished output keeps its settings and input fingerprint
(`<output>.meta.json`) and is not silently kept or replaced; one run at a time writes an
output; a crash leaves no half file and no mix of two runs."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from magpie.records import InputError, Journal, overwriting, read_records


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
    meta = json.loads(Path(f"{out}.meta.json").read_text())
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
    with pytest.raises(InputError, match=r"exists, with no out\.json\.meta\.json"):
        Journal(out, {"stage": "t"})
    assert not Journal(out, {"stage": "t"}, overwrite=True).complete


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
    assert json.loads(Path(f"{out}.meta.json").read_text())["settings"]["max_tokens"] == 5


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
        journal_before = Path(f"{out}.journal.jsonl").read_bytes()
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
        assert Path(f"{out}.journal.jsonl").read_bytes() == journal_before  # untouched
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
