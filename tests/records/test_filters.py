"""Filtering: each rule on crafted tags (nulls included), presets, top-K, shuffle, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from magpie.filters import RULES, apply_filters, check, load_filter_config, run_filter
from magpie.records import InputError, read_records

REPO = Path(__file__).resolve().parents[2]
PRESETS_DIR = REPO / "magpie" / "configs" / "filters"
PRESETS = sorted(PRESETS_DIR.glob("*.yaml"))


def good(**changes) -> dict:
    """A record that passes every rule; `changes` spoil one thing."""
    record = {
        "conversation_id": "m_1",
        "instruction": "Explain the water cycle.",
        "response": "Water evaporates, condenses and falls as rain.",
        "instruction_flag": None,
        "response_flag": None,
        "input_quality": "good",
        "instruct_reward": 1.5,
        "min_similar_conversation_id": None,
        "sample_quality": 5,
        "difficulty": "medium",
        "task_category": "Information seeking",
        "language": "EN",
        "llama_guard_2": "safe",
    }
    record.update(changes)
    return record


ALL = load_filter_config(
    None,
    input_quality=["good", "excellent"],
    min_instruct_reward=-10,
    no_trailing_colon=True,
    remove_duplicates=True,
    sample_quality=[4, 5],
    difficulty=["medium", "hard"],
    task_category=["Information seeking", "Others"],
    language=["en"],
    safe_only=True,
    response_pattern=r"\brain\.$",
)


def test_good_record_passes_every_rule():
    assert ALL.active() == list(RULES)
    assert check(good(), ALL) == []


@pytest.mark.parametrize(
    "changes, rule",
    [
        ({"response_flag": "unfinished"}, "generation_flags"),
        ({"instruction_flag": "empty"}, "generation_flags"),
        ({"input_quality": "average"}, "input_quality"),
        ({"input_quality": None}, "input_quality"),
        ({"instruct_reward": -10}, "min_instruct_reward"),  # strictly above, as the original
        ({"instruct_reward": None}, "min_instruct_reward"),  # the original raised TypeError
        ({"instruct_reward": "high"}, "min_instruct_reward"),
        ({"instruction": "Here is a list:"}, "no_trailing_colon"),
        ({"instruction": "Complete this: \n"}, "no_trailing_colon"),
        ({"instruction": "请把下面的句子翻译成英文："}, "no_trailing_colon"),  # full-width
        ({"instruction": "次の文を要約してください：\u3000"}, "no_trailing_colon"),
        ({"instruction": 'Finish the sentence "It was:"'}, "no_trailing_colon"),
        # no instruction, or no response: no complete exchange (and no answer of one)
        ({"instruction": None}, ["generation_flags", "no_trailing_colon", "response_pattern"]),
        ({"min_similar_conversation_id": "m_0"}, "remove_duplicates"),
        ({"sample_quality": 3}, "sample_quality"),
        ({"sample_quality": None}, "sample_quality"),
        ({"difficulty": "very easy"}, "difficulty"),
        ({"difficulty": None}, "difficulty"),
        ({"task_category": "Math"}, "task_category"),
        ({"language": "FR"}, "language"),
        ({"language": None}, "language"),
        ({"llama_guard_2": "unsafe\nS2"}, "safe_only"),
        ({"llama_guard_2": None}, "safe_only"),
        ({"response": "It is sunny."}, "response_pattern"),
        ({"response": None}, ["generation_flags", "response_pattern"]),
    ],
)
def test_each_rule_fails_alone_and_nulls_do_not_crash(changes, rule):
    assert check(good(**changes), ALL) == (rule if isinstance(rule, list) else [rule])


@pytest.mark.parametrize(
    "instruction",
    ["Use the ratio 3:2 in a sentence.", "时间是 10：30，请提醒我。", "List: apples, pears."],
)
def test_a_colon_inside_an_instruction_is_not_a_trailing_colon(instruction):
    assert check(good(instruction=instruction), ALL) == []


def test_missing_tags_fail_their_rules():
    bare = {"conversation_id": "m_1", "instruction": "Hi", "response": "Hello"}
    assert check(bare, ALL) == [
        r for r in RULES if r not in ("generation_flags", "no_trailing_colon")
    ]


def test_a_rule_whose_stage_did_not_run_is_not_applied_and_said(tmp_path, capsys):
    """The default job has no reward model and may skip gen_dis: the original's preset
    would reject every record on `instruct_reward` and the duplicate fields. A rule whose
    field no record has at all is not applied (and the log says so); a record lacking a
    field others have still fails it."""

    def untagged(i: int, quality: str) -> dict:
        record = good(conversation_id=f"m_{i}", input_quality=quality)
        del record["instruct_reward"], record["min_similar_conversation_id"]
        return record

    records = [untagged(0, "good"), untagged(1, "poor"), untagged(2, "excellent")]
    src = tmp_path / "x.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = run_filter(src, load_filter_config("magpie"))
    assert report.kept == 2 and dict(report.rejected) == {"input_quality": 1}
    assert set(report.not_applied) == {"min_instruct_reward", "remove_duplicates"}
    out = capsys.readouterr().out
    assert "[filter] min_instruct_reward not applied: no record has instruct_reward" in out
    assert '"min_instruct_reward"' not in out.split("[filter] rules:")[1]
    mixed = [good(), untagged(1, "good")]
    kept, rejected, report = apply_filters(mixed, load_filter_config("magpie"))
    assert report.not_applied == {}
    assert [r["conversation_id"] for r in kept] == ["m_1"]
    assert rejected[0]["filter_failed"] == ["min_instruct_reward", "remove_duplicates"]


CODE_ONLY = "too little natural language"  # unitag's language reason for code-only text


def _no_language(i: int) -> dict:
    """A record unitag's language mission ran on and could not place (null, with why)."""
    return good(conversation_id=f"m_{i}", language=None, tag_errors={"language": CODE_ONLY})


@pytest.mark.parametrize("others", [[], [good(conversation_id="m_9", language="EN")]])
def test_a_named_rule_applies_whatever_else_the_file_holds(others):
    """strict-en's `language: [EN]` on records whose language is null: they are dropped
    both when every record's language is null and when another record has one (issue 21:
    they were kept 2 of 2 alone and dropped beside a tagged record)."""
    records = [_no_language(0), _no_language(1), *others]
    kept, rejected, report = apply_filters(records, load_filter_config("strict-en"))
    assert report.not_applied == {}
    assert [r["conversation_id"] for r in rejected] == ["m_0", "m_1"]
    assert [r["filter_reason"] for r in rejected] == ["language", "language"]
    assert [r["conversation_id"] for r in kept] == [r["conversation_id"] for r in others]
    assert report.null_failed == {
        "language": (
            f"language fails 2 of {len(records)} records because their language is null: "
            "its tagger (unitag's language mission) did not tag them "
            "(tag_errors.language: too little natural language 2); drop the language rule "
            "to keep them"
        )
    }


def test_a_rule_whose_tagger_could_not_judge_rejects_and_says_so(tmp_path):
    """The embedded tagger stores null difficulty with "cannot_judge: ..." in tag_errors:
    magpie-dpo's difficulty rule applies and rejects every such record, and the log line
    of that rule says so (through the real CLI)."""
    reason = "cannot_judge: the embedded SmolLM2-135M-Instruct tagger's difficulty ..."
    records = [
        good(conversation_id=f"m_{i}", difficulty=None, tag_errors={"difficulty": reason})
        for i in range(3)
    ]
    src = tmp_path / "x.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(REPO / "exp" / "filter.py"), "--input_file", str(src)]
        + ["--config", "magpie-dpo"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "records in 3, kept 0, rejected 3 (by rule: difficulty 3;" in proc.stdout
    assert (
        "[filter] difficulty fails 3 of 3 records because their difficulty is null: its "
        "tagger (unitag's difficulty mission) could not judge them (tag_errors.difficulty: "
        "cannot_judge 3); drop the difficulty rule to keep them"
    ) in proc.stdout
    assert "not applied" not in proc.stdout
    assert (tmp_path / "x_filtered.jsonl").read_text() == ""
    rejected = read_records(tmp_path / "x_rejected.jsonl")
    assert [r["filter_reason"] for r in rejected] == ["difficulty"] * 3


def test_a_field_missing_beside_nulls_is_said_as_such():
    records = [good(conversation_id="m_0", difficulty=None), good(conversation_id="m_1")]
    del records[1]["difficulty"]
    _, _, report = apply_filters(records, load_filter_config(None, difficulty=["medium"]))
    assert report.null_failed["difficulty"].startswith(
        "difficulty fails 2 of 2 records because their difficulty is null or missing: its "
        "tagger (unitag's difficulty mission) did not tag them (tag_errors.difficulty: "
    )
    assert "no reason recorded 1" in report.null_failed["difficulty"]
    assert "field missing 1" in report.null_failed["difficulty"]


def test_duplicate_rule_keeps_the_representative_and_reads_uuid():
    assert check(good(min_similar_conversation_id="m_1"), ALL) == []
    rec = good(uuid="u1", min_similar_uuid="u0")
    del rec["min_similar_conversation_id"]
    assert check(rec, ALL) == ["remove_duplicates"]
    assert check(rec | {"min_similar_uuid": "u1"}, ALL) == []


def test_label_forms_accepted():
    assert (
        check(good(sample_quality="4", input_quality="Excellent", task_category="Others"), ALL)
        == []
    )
    assert load_filter_config(None, sample_quality="4,5").sample_quality == [4, 5]


def test_unknown_labels_and_settings_refused(tmp_path):
    with pytest.raises(InputError, match="unknown label 'great'"):
        load_filter_config(None, input_quality="good,great")
    with pytest.raises(InputError, match="sample_quality: scores are 1..5"):
        load_filter_config(None, sample_quality=[6])
    bad = tmp_path / "bad.yaml"
    bad.write_text("input_qualty: [good]\n")
    with pytest.raises(InputError, match="unknown setting"):
        load_filter_config(bad)
    with pytest.raises(InputError, match="not found"):
        load_filter_config(tmp_path / "none.yaml")


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_presets_load(preset):
    cfg = load_filter_config(preset)
    assert cfg.generation_flags and cfg.remove_duplicates


def test_presets_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: the shipped files are found by name
    for name in ("magpie-300k", "magpie-300k.yaml"):
        assert load_filter_config(name) == load_filter_config(PRESETS_DIR / "magpie-300k.yaml")
    (tmp_path / "magpie.yaml").write_text("top_k: 7\n")  # a file of that name comes first
    assert load_filter_config("magpie.yaml").top_k == 7
    with pytest.raises(InputError, match="shipped presets: fms-dgt, magpie, magpie-300k"):
        load_filter_config("magpie-1m")
    with pytest.raises(InputError, match="not found"):  # a path is a path, not a name
        load_filter_config("elsewhere/magpie-300k.yaml")


def test_original_preset_matches_its_notebook():
    cfg = load_filter_config(PRESETS_DIR / "magpie-300k.yaml")
    assert cfg.input_quality == ["good", "excellent"]
    assert cfg.min_instruct_reward == -10 and cfg.no_trailing_colon
    assert (cfg.top_k, cfg.shuffle, cfg.seed) == (300000, True, 42)


def _records(n: int) -> list[dict]:
    return [good(conversation_id=f"m_{i}", response="x" * (i * 7 % 23 + 1)) for i in range(n)]


def test_top_k_longest_then_seeded_shuffle():
    records = _records(20)
    cfg = load_filter_config(None, input_quality="good", top_k=5, shuffle=True, seed=1)
    kept, rejected, report = apply_filters(records, cfg)
    longest = sorted(records, key=lambda r: -len(r["response"]))[:5]
    assert sorted(r["conversation_id"] for r in kept) == sorted(
        r["conversation_id"] for r in longest
    )
    assert len(rejected) == 15 and {r["filter_reason"] for r in rejected} == {"top_k"}
    again, _, _ = apply_filters(records, cfg)
    assert [r["conversation_id"] for r in again] == [r["conversation_id"] for r in kept]
    other, _, _ = apply_filters(records, load_filter_config(None, top_k=5, shuffle=True, seed=2))
    assert [r["conversation_id"] for r in other] != [r["conversation_id"] for r in kept]
    assert report.kept == 5 and report.rejected["top_k"] == 15


def test_response_pattern_reads_the_first_response_of_a_conversation():
    cfg = load_filter_config(None, response_pattern="^## Step 1")
    cot = "Let us see.\n## Step 1: read\n## Step 2: answer"
    assert check(good(response=cot), cfg) == []
    talk = {
        "conversation_id": "c",
        "conversations": [
            {"from": "human", "value": "Q"},
            {"from": "gpt", "value": cot},
            {"from": "human", "value": "Q2"},
            {"from": "gpt", "value": "plain"},
        ],
    }
    assert check(talk, cfg) == []
    talk["conversations"][1]["value"] = "plain"
    assert check(talk, cfg) == ["response_pattern"]
    with pytest.raises(InputError, match="response_pattern"):
        load_filter_config(None, response_pattern="(unclosed")


def test_max_per_category_rebalances_with_a_seeded_choice():
    categories = ["Math"] * 10 + ["Coding & Debugging"] * 3 + [None] * 4
    records = [good(conversation_id=f"m_{i}", task_category=c) for i, c in enumerate(categories)]
    cfg = load_filter_config(None, max_per_category=3, seed=7)
    kept, rejected, report = apply_filters(records, cfg)
    per = {}
    for r in kept:
        per[r["task_category"]] = per.get(r["task_category"], 0) + 1
    assert per == {"Math": 3, "Coding & Debugging": 3, None: 3}
    ids = [r["conversation_id"] for r in kept]
    assert ids == sorted(ids, key=lambda x: int(x[2:]))  # input order kept
    assert {r["filter_reason"] for r in rejected} == {"max_per_category"}
    assert len(rejected) == 8 and report.rejected["max_per_category"] == 8
    again, _, _ = apply_filters(records, cfg)
    assert [r["conversation_id"] for r in again] == ids
    other = {
        tuple(r["conversation_id"] for r in apply_filters(records, cfg_)[0])
        for cfg_ in (load_filter_config(None, max_per_category=3, seed=s) for s in range(5))
    }
    assert len(other) > 1  # the seed decides which records stay
    with pytest.raises(InputError, match="max_per_category must be a non-negative integer"):
        load_filter_config(None, max_per_category=-1)


def test_fewer_survivors_than_top_k_is_fine():
    kept, rejected, _ = apply_filters(_records(3), load_filter_config(None, top_k=300000))
    assert len(kept) == 3 and rejected == []
    assert [len(r["response"]) for r in kept] == sorted(
        (len(r["response"]) for r in kept), reverse=True
    )


def test_run_filter_writes_kept_and_rejected_with_reasons(tmp_path, capsys):
    records = [
        good(conversation_id="m_0"),
        good(conversation_id="m_1", input_quality=None, instruct_reward=None),
        good(conversation_id="m_2", min_similar_conversation_id="m_0"),
        good(conversation_id="m_3", response_flag="unfinished"),
    ]
    src = tmp_path / "x_distance.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = run_filter(src, load_filter_config(PRESETS_DIR / "magpie.yaml"))
    kept = read_records(tmp_path / "x_distance_filtered.jsonl")
    rejected = read_records(tmp_path / "x_distance_rejected.jsonl")
    assert [r["conversation_id"] for r in kept] == ["m_0"]
    reasons = {r["conversation_id"]: (r["filter_reason"], r["filter_failed"]) for r in rejected}
    assert reasons == {
        "m_1": ("input_quality", ["input_quality", "min_instruct_reward"]),
        "m_2": ("remove_duplicates", ["remove_duplicates"]),
        "m_3": ("generation_flags", ["generation_flags"]),
    }
    assert report.failed["min_instruct_reward"] == 1 and report.rejected["input_quality"] == 1
    line = capsys.readouterr().out
    assert "records in 4, kept 1, rejected 3" in line


def test_cli_flags_override_preset(tmp_path):
    from magpie.stages.filter import Filter

    src = tmp_path / "d.jsonl"
    src.write_text(
        "".join(
            json.dumps(good(conversation_id=f"m_{i}", language=lang)) + "\n"
            for i, lang in enumerate(["EN", "FR"])
        )
    )
    out = tmp_path / "o.jsonl"
    Filter(
        input_file=str(src),
        config=str(PRESETS_DIR / "magpie.yaml"),
        language=("en",),
        shuffle=False,
        output_file=str(out),
    ).run()
    assert [r["language"] for r in read_records(out)] == ["EN"]


def test_cli_bad_preset_exits_nonzero(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps(good()) + "\n")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "exp" / "filter.py"),
            "--input_file",
            str(src),
            "--input_quality",
            "great",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "unknown label 'great'" in proc.stderr
    assert not (tmp_path / "d_filtered.jsonl").exists()
