"""The report page without a browser: the data it embeds cannot close its script element,
the Content-Security-Policy allows exactly the page's own script and style, counts use
every record while the browser gets a sample, and bad input is one clear error."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from collections import Counter

import pytest
from report_inputs import HOSTILE, hostile_file, read_json_records, tagged_file  # noqa: F401

from magpie.records import InputError
from magpie.report_page import build_report, embedded_json


def page_data(html: str) -> dict:
    """The JSON the page embeds, read back as the browser's JSON.parse would (which has
    no NaN or Infinity)."""
    (raw,) = re.findall(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)

    def refuse(constant: str):
        raise ValueError(f"JSON.parse cannot read {constant}")

    return json.loads(raw, parse_constant=refuse)


def test_embedded_json_cannot_end_its_script_element():
    value = {"text": HOSTILE, "key</script>": "a & b <!-- c -->"}
    text = embedded_json(value)
    for forbidden in ("<", ">", "&", "\u2028", "\u2029"):
        assert forbidden not in text
    assert json.loads(text) == value


def test_the_policy_allows_exactly_the_inline_script_and_style(tagged_file, tmp_path):  # noqa: F811
    html = build_report([tagged_file], tmp_path / "p.html").read_text(encoding="utf-8")
    (policy,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'" and directives["img-src"] == "data:"
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(scripts) == 1 and len(styles) == 1

    def source(text: str) -> str:
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        return f"'sha256-{digest}'"

    assert directives["script-src"] == source(scripts[0])
    assert directives["style-src"] == source(styles[0])
    assert "http" not in html.replace("http-equiv", "").replace("http://www.w3.org/2000/svg", "")
    assert "innerHTML" not in scripts[0] and "javascript:" not in scripts[0]


def test_counts_use_every_record_and_the_browser_a_sample(tagged_file, tmp_path):  # noqa: F811
    records = read_json_records(tagged_file)
    data = page_data(build_report([tagged_file], tmp_path / "p.html", sample=40).read_text())
    stats = data["stats"]
    assert stats["records"] == len(records) == 300
    difficulty = dict(map(tuple, stats["labels"]["difficulty"]["bars"]))
    by_hand = Counter(r["difficulty"] or "(none)" for r in records)
    assert (
        difficulty == {k: by_hand.get(k, 0) for k in difficulty} and sum(difficulty.values()) == 300
    )
    languages = dict(map(tuple, stats["labels"]["language"]["bars"]))
    assert languages == {**Counter(r["language"] for r in records), "(none)": 0}
    distance = stats["numbers"]["min_neighbor_distance"]
    # No gen_dis meta file: gen_dis's default for its default model (README: 0.1).
    below = sum(r["min_neighbor_distance"] < 0.1 for r in records)
    assert (distance["below"], distance["count"], sum(distance["counts"])) == (below, 300, 300)
    assert distance["threshold"] == 0.1
    reward = stats["numbers"]["instruct_reward"]
    assert sum(reward["counts"]) == 300 and reward["edges"][0] <= -5 and reward["edges"][-1] >= 5
    flags = Counter(
        f"instruction_flag: {r['instruction_flag']}" for r in records if r["instruction_flag"]
    )
    assert stats["flags"] == dict(flags)
    # The sample: 40 distinct records of the file, drawn across it (not its first 40).
    ids = [r["id"] for r in data["sample"]]
    assert len(ids) == len(set(ids)) == data["sample_size"] == 40
    assert set(ids) <= {r["conversation_id"] for r in records}
    assert max(int(i.split("_")[1]) for i in ids) >= 100


def test_bad_input_is_one_error_naming_the_file(tmp_path):
    with pytest.raises(InputError, match="nothere"):
        build_report([tmp_path / "nothere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .json or .jsonl records file found"):
        build_report([tmp_path / "empty"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "fine"}\n{not json\n')
    with pytest.raises(InputError, match="bad.jsonl"):
        build_report([bad])
    assert not (tmp_path / "bad_report.html").exists()


def test_magpie_report_command_writes_the_page(hostile_file, tmp_path):  # noqa: F811
    out = tmp_path / "sub" / "page.html"
    done = subprocess.run(
        [sys.executable, "-m", "magpie", "report", str(hostile_file), "--output", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    data = page_data(out.read_text(encoding="utf-8"))
    assert data["stats"]["records"] == len(HOSTILE) and data["sample_size"] == len(HOSTILE)
    done = subprocess.run(
        [sys.executable, "-m", "magpie", "report", str(tmp_path / "missing.jsonl")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.strip().startswith("error:")
    assert "missing.jsonl" in done.stderr


def test_a_tag_no_record_could_get_is_shown_as_all_null(tmp_path):
    """The tagger's "cannot judge" nulls every difficulty: the chart says so, not vanish."""
    records = [
        {"instruction": f"q{i}", "response": "a", "difficulty": None, "difficulty_confidence": None}
        for i in range(7)
    ]
    src = tmp_path / "tagged.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = page_data(build_report([src]).read_text(encoding="utf-8"))
    bars = dict(map(tuple, data["stats"]["labels"]["difficulty"]["bars"]))
    assert bars["(none)"] == 7 and sum(bars.values()) == 7
    assert data["stats"]["numbers"]["difficulty_confidence"]["nulls"] == 7
    assert "task_category" not in data["stats"]["labels"]  # a field no record has: no chart


def test_the_report_stage_writes_beside_its_input_or_for_the_whole_folder(tmp_path):
    from magpie import Report

    folder = tmp_path / "run"
    folder.mkdir()
    src = folder / "tagged.jsonl"
    src.write_text(json.dumps({"instruction": "q", "response": "a"}) + "\n")
    other = folder / "later.jsonl"
    other.write_text("".join(json.dumps({"instruction": f"q{i}"}) + "\n" for i in range(3)))
    alone = Report(input_files=[str(src)]).run()
    assert alone == folder / "tagged_report.html"
    assert page_data(alone.read_text())["stats"]["records"] == 1
    whole = Report(input_files=[str(src)], whole_run=True, sample=2).run()
    assert whole == folder / "report.html"
    data = page_data(whole.read_text())  # no stage outputs known: every records file
    assert data["stats"]["records"] == 4 and data["sample_size"] == 2


def test_non_finite_numbers_count_as_null_and_the_page_still_parses(tmp_path):
    src = tmp_path / "nan.jsonl"  # NaN and 1e999 (infinity) are what Python's json reads
    src.write_text(
        '{"instruction": "a", "response": "b", "instruct_reward": NaN}\n'
        '{"instruction": "c", "response": "d", "instruct_reward": 1e999}\n'
        '{"instruction": "e", "response": "f", "instruct_reward": 2.5}\n'
    )
    data = page_data(build_report([src]).read_text(encoding="utf-8"))
    reward = data["stats"]["numbers"]["instruct_reward"]
    assert (reward["count"], reward["nulls"], reward["median"]) == (1, 2, 2.5)


def test_non_finite_numbers_inside_tags_ids_and_flags_are_shown_as_text(tmp_path):
    src = tmp_path / "nested.jsonl"
    src.write_text(
        '{"id": NaN, "instruction": "a", "response": "b", "input_quality": "good", '
        '"input_quality_confidence": NaN, "knowledge": [1e999, "x"], "response_flag": NaN}\n'
    )
    data = page_data(build_report([src]).read_text(encoding="utf-8"))  # parses: no NaN
    (record,) = data["sample"]
    assert record["id"] == "nan" and record["flags"] == {"response_flag": "nan"}
    assert record["tags"]["knowledge"] == ["inf", "x"]
