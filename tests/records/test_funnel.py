"""The funnel of a run: stages found from their outputs and meta files, ordered by the
input chain, records in and out, flags by cause, filter rejections by rule.

Inputs are hand-written records (as gen_ins, gen_res and unitag write them, each with the
meta file its stage writes), then the real concat and filter stages; every expected
number is counted from what the test wrote, never from the funnel's own output."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from magpie.card import write_stage_meta
from magpie.funnel import funnel
from magpie.records import InputError, meta_path, output_meta, write_json
from magpie.stages.concat import Concat
from magpie.stages.filter import Filter
from magpie.stages.gen_dis import GenDis

LANGUAGES = ["EN", "FR", "en", "DE", "EN", "en", "EN"]
N = len(LANGUAGES)
EMPTY_INSTRUCTION = {5}  # gen_ins flagged these
TRUNCATED = {1, 2}  # gen_res flagged these
NOT_TAGGED = {3}  # the language mission failed on these


def stage_file(path: Path, records: list[dict], settings: dict) -> Path:
    """An output as a journaled stage leaves it: the records, then its meta file."""
    path.write_text(json.dumps(records))
    write_json(meta_path(path), output_meta(settings))
    return path


def made_run(folder: Path) -> dict[str, Path]:
    """gen_ins → gen_res → unitag language, hand-written; names chosen so that sorting
    by name would not give the chain's order."""
    folder.mkdir(parents=True, exist_ok=True)
    ins = [
        {
            "id": i,
            "instruction": f"Question {i} about {'cats' if i % 2 else 'dogs'}?",
            "instruction_flag": "empty" if i in EMPTY_INSTRUCTION else None,
        }
        for i in range(N)
    ]
    res = [
        dict(r, response=f"Answer {r['id']}.", response_flag="length" if i in TRUNCATED else None)
        for i, r in enumerate(ins)
    ]
    tags = []
    for i, r in enumerate(res):
        tagged = dict(
            r,
            language=LANGUAGES[i],
            input_quality="good",
            instruct_reward=1.0,
            min_similar_conversation_id=None,
        )
        if i in NOT_TAGGED:
            tagged["language"] = None
            tagged["tag_errors"] = {"language": "no text: the instruction is empty"}
        tags.append(tagged)
    a = stage_file(folder / "z_ins.json", ins, {"stage": "gen_ins", "model": "M", "n": 3})
    b = stage_file(
        folder / "b_res.json", res, {"stage": "gen_res", "model": "M", "input": str(a.resolve())}
    )
    c = stage_file(
        folder / "a_language.json",
        tags,
        {"stage": "unitag", "mission": "language", "input": str(b.resolve())},
    )
    return {"ins": a, "res": b, "tags": c}


def by_stage(rows: list[dict]) -> dict[str, dict]:
    return {row["stage"]: row for row in rows}


def test_a_run_in_chain_order_with_its_numbers(tmp_path):
    files = made_run(tmp_path / "run")
    export = Concat(input_files=[str(files["tags"])], id_prefix="t").run()
    kept = Filter(input_file=str(export), language="en", generation_flags=True).run()
    rows = funnel([tmp_path / "run"])
    assert [r["stage"] for r in rows] == [
        "gen_ins",
        "gen_res",
        "unitag language",
        "concat",
        "filter",
    ]
    rows = by_stage(rows)
    assert rows["gen_ins"]["records_in"] == 0 and rows["gen_ins"]["records_out"] == N
    assert rows["gen_ins"]["flags"] == {"empty": len(EMPTY_INSTRUCTION)}
    assert rows["gen_res"]["records_in"] == N and rows["gen_res"]["records_out"] == N
    # gen_res's own flags only: the instruction flag it carried is gen_ins's
    assert rows["gen_res"]["flags"] == {"length": len(TRUNCATED)}
    assert rows["unitag language"]["flags"] == {"no text": len(NOT_TAGGED)}
    assert rows["concat"]["records_in"] == N and rows["concat"]["records_out"] == N
    assert rows["concat"]["flags"] == {}
    assert rows["concat"]["file"] == str(export.resolve())
    # filter: flagged records, then the language rule, counted from what was written
    flagged = EMPTY_INSTRUCTION | TRUNCATED
    other_language = {
        i
        for i, lang in enumerate(LANGUAGES)
        if i not in flagged and (i in NOT_TAGGED or lang.lower() != "en")
    }
    kept_ids = [i for i in range(N) if i not in flagged | other_language]
    assert rows["filter"]["records_in"] == N
    assert rows["filter"]["records_out"] == len(kept_ids)
    assert rows["filter"]["rejected"] == {
        "generation_flags": len(flagged),
        "language": len(other_language),
    }
    assert rows["filter"]["file"] == str(Path(kept).resolve())
    assert all(row["rejected"] == {} for row in rows.values() if row["stage"] != "filter")


def test_rejects_file_named_in_settings_and_files_given_one_by_one(tmp_path):
    files = made_run(tmp_path / "run")
    export = Concat(input_files=[str(files["tags"])], id_prefix="t").run()
    out, rejects = tmp_path / "elsewhere" / "kept.jsonl", tmp_path / "elsewhere" / "no.jsonl"
    out.parent.mkdir()
    Filter(
        input_file=str(export),
        generation_flags=True,
        output_file=str(out),
        rejected_file=str(rejects),
    ).run()
    rows = funnel([export, out])  # files, not folders: only these two
    assert [r["stage"] for r in rows] == ["concat", "filter"]
    flagged = len(EMPTY_INSTRUCTION | TRUNCATED)
    assert rows[1]["rejected"] == {"generation_flags": flagged}
    assert rows[1]["records_out"] == N - flagged
    # concat's input is not among those given: its records are counted from the file
    assert rows[0]["records_in"] == N


def test_near_duplicate_flags_as_gen_dis_counts_them(tmp_path):
    """A gen_dis output (its meta written as gen_dis writes it): records with
    near-duplicates and records represented by another, counted by hand."""
    src = tmp_path / "x_sharegpt.jsonl"
    records = [
        {"conversation_id": f"x_{i}", "conversations": [{"from": "human", "value": "q"}]}
        for i in range(5)
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    annotated = [
        # x_0 and x_1 are near-duplicates, x_0 represents both; x_4 has no text
        dict(
            records[0],
            min_neighbor_distance=0.01,
            repeat_count=1,
            min_similar_conversation_id="x_0",
        ),
        dict(
            records[1],
            min_neighbor_distance=0.01,
            repeat_count=1,
            min_similar_conversation_id="x_0",
        ),
        dict(  # a flag gen_res gave, carried along: not gen_dis's
            records[2],
            min_neighbor_distance=0.9,
            repeat_count=0,
            min_similar_conversation_id=None,
            response_flag="length",
        ),
        dict(
            records[3], min_neighbor_distance=0.8, repeat_count=0, min_similar_conversation_id=None
        ),
        dict(
            records[4], min_neighbor_distance=None, repeat_count=0, min_similar_conversation_id=None
        ),
    ]
    out = tmp_path / "x_sharegpt_distance.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in annotated))
    write_stage_meta(GenDis(input_file=str(src)), out, [src])
    [row] = funnel([out])
    assert row["stage"] == "gen_dis" and row["records_in"] == 5 and row["records_out"] == 5
    assert row["flags"] == {"with near-duplicates": 2, "represented by another": 1, "no text": 1}


def test_outputs_of_earlier_versions_found_by_their_default_names(tmp_path):
    """concat, gen_dis, filter and gen_po_pairs wrote no meta file before: their default
    names place them in the chain."""
    line = {"conversation_id": "x", "conversations": [{"from": "human", "value": "q"}]}

    def lines(n: int, **extra) -> str:
        return "".join(json.dumps(dict(line, **extra)) + "\n" for _ in range(n))

    (tmp_path / "m_sharegpt.jsonl").write_text(lines(6))
    (tmp_path / "m_sharegpt_distance.jsonl").write_text(lines(6, repeat_count=0))
    (tmp_path / "m_sharegpt_distance_filtered.jsonl").write_text(lines(4))
    (tmp_path / "m_sharegpt_distance_rejected.jsonl").write_text(
        lines(1, filter_reason="language") + lines(1, filter_reason="input_quality")
    )
    (tmp_path / "scored.json").write_text(json.dumps([dict(line)] * 5))
    (tmp_path / "scored_dpo").mkdir()
    (tmp_path / "scored_dpo" / "train.jsonl").write_text(lines(3))
    (tmp_path / "scored_dpo" / "test.jsonl").write_text(lines(1))
    rows = funnel([tmp_path])
    assert [r["stage"] for r in rows] == ["concat", "gen_dis", "filter", "gen_po_pairs"]
    concat, dis, kept, pairs = rows
    assert (concat["records_in"], concat["records_out"]) == (6, 6)
    assert (dis["records_in"], dis["records_out"]) == (6, 6)
    assert (kept["records_in"], kept["records_out"]) == (6, 4)
    assert kept["rejected"] == {"language": 1, "input_quality": 1}
    assert (pairs["records_in"], pairs["records_out"]) == (5, 4)


def test_preference_chain_in_order(tmp_path):
    multi = stage_file(
        tmp_path / "p_5res.json",
        [
            {"instruction": "q", "responses": ["a", "b"], "response_flags": [None, "length"]},
            {"instruction": "q", "responses": ["a", "b"], "response_flags": [None, None]},
        ],
        {"stage": "gen_po_multi_res", "input": str(tmp_path / "gone.json")},
    )
    rewards = stage_file(
        tmp_path / "a_armorm.json",
        [{"instruction": "q", "responses": ["a"], "rewards_flag": "skipped"}, {"instruction": "q"}],
        {"stage": "gen_po_rewards", "input": str(multi.resolve())},
    )
    rows = funnel([tmp_path])
    assert [r["stage"] for r in rows] == ["gen_po_multi_res", "gen_po_rewards"]
    assert rows[0]["records_in"] is None  # its input is gone: unknown, not 0
    assert rows[0]["flags"] == {"length": 1}
    assert rows[1]["flags"] == {"skipped": 1}
    assert rows[1]["file"] == str(rewards.resolve())


def test_no_such_path(tmp_path):
    with pytest.raises(InputError, match="no such run folder"):
        funnel([tmp_path / "nope"])


def test_streams_records_of_a_large_file(tmp_path):
    """Counting holds one record at a time: memory stays far below the file's size."""
    path = tmp_path / "big_sharegpt.jsonl"
    record = {
        "conversation_id": "x",
        "conversations": [{"from": "human", "value": "q" * 200}, {"from": "gpt", "value": "a"}],
    }
    n = 20_000
    with open(path, "w") as f:
        for _ in range(n):
            f.write(json.dumps(record) + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        [row] = funnel([path])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert row["records_out"] == n
    assert peak < size / 10, (peak, size)


def test_a_file_no_stage_claims_is_counted_when_named(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"instruction": "q", "x_flag": "odd"}\n{"instruction": "r"}\n')
    assert funnel([tmp_path]) == []  # a folder: only stage outputs
    [row] = funnel([path])
    assert row["stage"] == "file" and row["records_in"] is None and row["records_out"] == 2
    assert row["flags"] == {"odd": 1}


def test_concat_flags_its_records_cannot_show_come_from_its_meta(tmp_path):
    """A follow-up left unanswered is dropped from the export (nothing in the record
    says so afterwards): the funnel reports it as concat's summary counts it."""
    records = [
        {"id": 0, "instruction": "Hi?", "response": "Hello."},
        {"id": 1, "instruction": "Hi?", "response": "Hello.", "instruction_2": "And?"},
        {"id": 2, "instruction": "Unanswered?"},
    ]
    src = tmp_path / "s.json"
    src.write_text(json.dumps(records))
    export = Concat(input_files=[str(src)], id_prefix="f").run()
    [row] = funnel([export])
    assert row["flags"] == {"incomplete turns left out": 1, "no response": 1}


def test_counts_kept_while_the_output_is_unchanged(tmp_path, monkeypatch):
    """The card is rewritten after each later stage: an unchanged output is not read
    again, a changed one is."""
    path = tmp_path / "x_sharegpt.jsonl"
    path.write_text('{"conversations": [{"from": "human", "value": "q"}]}\n' * 3)
    assert funnel([path])[0]["records_out"] == 3

    def unread(*args, **kwargs):
        raise AssertionError("read again")

    with monkeypatch.context() as m:
        m.setattr("magpie.funnel.iter_records", unread)
        assert funnel([path])[0]["records_out"] == 3
    path.write_text('{"conversations": [{"from": "human", "value": "q"}]}\n' * 5)
    assert funnel([path])[0]["records_out"] == 5
