"""Records stream: the readers, the writer and the journal hold a bounded number of
records whatever the file's size (issue 25), and read and write exactly what the standard
library's json reads and writes."""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest

from magpie import records as rec
from magpie.records import (
    InputError,
    Journal,
    RecordWriter,
    count_records,
    iter_records,
    read_records,
    write_records,
)


def varied_records(n: int, seed: int = 0) -> list[dict]:
    """Records with what JSON files hold: nested lists and objects, empty ones, floats,
    negative and large (< 2**63) integers, booleans, null, escapes, non-ASCII text, line
    separators, emoji (surrogate pairs when escaped)."""
    rng = random.Random(seed)
    pieces = ["plain", "é", "中文", "😀", "\u2028", "\n", '"q"', "\\", "\t", "<|im_end|>", ""]
    out = []
    for i in range(n):
        out.append(
            {
                "id": i,
                "instruction": "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))),
                "score": rng.uniform(-1e6, 1e6),
                "tiny": rng.random() * 1e-300,
                "big": rng.randint(-(2**62), 2**62),
                "flag": rng.choice([None, True, False]),
                "tags": [rng.choice(pieces) for _ in range(rng.randint(0, 3))],
                "nested": {"a": [], "b": {}, "c": [{"d": [1, 2.5, None]}]},
            }
        )
    return out


@pytest.mark.parametrize("ensure_ascii", [False, True])
@pytest.mark.parametrize("indent", [None, 2])
def test_json_array_streamed_equals_stdlib(tmp_path, ensure_ascii, indent):
    data = varied_records(300)
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data, ensure_ascii=ensure_ascii, indent=indent), encoding="utf-8")
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert list(iter_records(path)) == expected
    assert read_records(path) == expected
    assert count_records(path) == len(expected)


def test_surrogate_pairs_across_block_boundaries_stay_on_the_fast_path(tmp_path, monkeypatch):
    """An escaped emoji ("\\ud83d\\ude00") whose halves fall in two read blocks is one
    character, not two lone surrogates: no record is marked repaired."""
    from ijson.backends import python as slow

    def no_fallback(*args, **kwargs):
        raise AssertionError("fell back to the slow parser")

    monkeypatch.setattr(rec, "_WHOLE_READ_LIMIT", 0)  # a fallback would use ijson's python
    monkeypatch.setattr(slow, "items", no_fallback)
    escaped = json.dumps("😀")  # "\ud83d\ude00" (ensure_ascii)
    for shift in range(0, 14):
        body = "x" * (65536 - 12 - shift)
        path = tmp_path / f"p{shift}.json"
        path.write_text(f'[{{"a": "{body}"}}, {{"b": {escaped}}}]', encoding="utf-8")
        got = list(iter_records(path))
        assert got == [{"a": body}, {"b": "😀"}], shift
    monkeypatch.undo()  # a lone half at the boundary is still found (and read exactly)
    mark = {rec.REPAIRED_FIELD: rec.REPAIRED_SURROGATE}
    for shift in range(0, 14):
        for half, where in (("\\ud83d", "x"), ("\\ude00", "")):
            body = "x" * (65536 - 12 - shift)
            path = tmp_path / f"h{shift}.json"
            path.write_text(f'[{{"a": "{body}"}}, {{"b": "{where}{half}"}}]', encoding="utf-8")
            assert list(iter_records(path)) == [{"a": body}, {"b": f"{where}\ufffd", **mark}]


@pytest.mark.parametrize("whole_limit", [None, 0])
def test_lone_surrogates_and_huge_integers_read_exactly(tmp_path, monkeypatch, whole_limit):
    """What ijson's C parser would read wrongly (a lone surrogate becomes "?", an integer
    beyond 64 bits overflows) is read exactly: by the standard library for small files,
    by ijson's Python parser beyond `_WHOLE_READ_LIMIT` (0 here forces it)."""
    if whole_limit is not None:
        monkeypatch.setattr(rec, "_WHOLE_READ_LIMIT", whole_limit)
    good = [{"n": i, "t": "ok"} for i in range(5000)]  # the fast parser reads these first
    tail = '{"t": "a\\ud83db"}, {"t": "\\ude00"}, {"big": 123456789012345678901234567890}'
    path = tmp_path / "x.json"
    path.write_text(json.dumps(good)[:-1] + ", " + tail + "]", encoding="utf-8")
    got = list(iter_records(path))
    assert got[:5000] == good
    mark = {rec.REPAIRED_FIELD: rec.REPAIRED_SURROGATE}
    assert got[5000:] == [
        {"t": "a\ufffdb", **mark},
        {"t": "\ufffd", **mark},
        {"big": 123456789012345678901234567890},
    ]


def test_malformed_large_json_names_the_record(tmp_path, monkeypatch):
    monkeypatch.setattr(rec, "_WHOLE_READ_LIMIT", 0)
    path = tmp_path / "x.json"
    path.write_text('[{"a": 1}, {"b": 2}, {"c": }]', encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.json: record 2: malformed JSON"):
        list(iter_records(path))
    path.write_text('[{"a": 1}, 7]', encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.json: record 1: expected a JSON object"):
        list(iter_records(path))


def test_small_malformed_json_keeps_the_line(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('[\n{"a": 1},\n{"b": 2,}\n]', encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.json:3: malformed JSON"):
        list(iter_records(path))


@pytest.mark.parametrize("n", [0, 1, 40])
def test_json_output_is_the_originals_bytes(tmp_path, n):
    """A .json output is what the original wrote: json.dump(records, indent=2)."""
    data = varied_records(n, seed=3)
    path = tmp_path / "out.json"
    assert write_records(path, iter(data)) == n
    expected = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    assert path.read_text(encoding="utf-8") == expected
    jsonl = tmp_path / "out.jsonl"
    write_records(jsonl, iter(data))
    lines = jsonl.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and [json.loads(x) for x in lines[:-1]] == data


def test_writer_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("[]\n", encoding="utf-8")

    def records():
        yield {"a": 1}
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_records(path, records())
    assert path.read_text(encoding="utf-8") == "[]\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    with RecordWriter(tmp_path / "w.jsonl") as w:
        w.write({"x": "\u2028"})
    assert w.count == 1 and read_records(tmp_path / "w.jsonl") == [{"x": "\u2028"}]


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_and_writing_hold_one_record_at_a_time(tmp_path):
    """20k records of ~1 KB: reading them all takes ~30 MB of Python objects; streaming
    them through the reader and the writer stays far below (a few records at a time)."""
    record = {"instruction": "x" * 400, "response": "y" * 600, "tags": ["a", "b"]}
    src = tmp_path / "in.json"
    write_records(src, ({**record, "id": i} for i in range(20000)))
    held = _peak_bytes(lambda: read_records(src))
    streamed = _peak_bytes(lambda: write_records(tmp_path / "out.jsonl", iter_records(src)))
    assert held > 20 * 2**20
    assert streamed < held / 20
    assert count_records(tmp_path / "out.jsonl") == 20000


def test_journal_keeps_offsets_and_reads_records_back(tmp_path):
    """The journal's index holds a slot per key, not the records; a resumed journal
    reads every record back as written, and `finish` writes them in key order."""
    out = tmp_path / "out.json"
    data = varied_records(2000, seed=5)
    journal = Journal(out, {"stage": "t"})
    journal.append_many([(i, r) for i, r in reversed(list(enumerate(data[:1500])))])
    journal.append("name", {"not": "an index"})
    journal.close()
    journal.release()
    again = Journal(out, {"stage": "t"})
    assert len(again.done) == 1501 and 1499 in again.done and 1500 not in again.done
    assert again.done["name"] == {"not": "an index"}
    assert again.done[7] == data[7]
    again.append_many(list(enumerate(data))[1500:])
    again.finish(again.in_order(2000))
    assert read_records(out) == json.loads(json.dumps(data))


def test_journal_index_memory_is_bytes_per_record(tmp_path):
    """A million keys take ~8 MB of offsets (an array), not a dict of records."""
    index = rec.JournalIndex(tmp_path / "j.jsonl")

    def fill():
        for k in range(1_000_000):
            index.add(k, k * 1700)

    assert _peak_bytes(fill) < 24 * 2**20
    assert len(index) == 1_000_000 and 999_999 in index and 1_000_000 not in index


def test_pending_skips_journaled_records(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(src, [{"i": i} for i in range(10)])
    journal = Journal(tmp_path / "out.jsonl", {"stage": "t"})
    journal.append_many([(2, {"i": 2}), (5, {"i": 5})])
    assert [i for i, _ in journal.pending(src)] == [0, 1, 3, 4, 6, 7, 8, 9]
    assert [r for _, r in journal.pending(src)][0] == {"i": 0}
    journal.release()


def test_malformed_record_right_after_a_lone_surrogate_is_named(tmp_path, monkeypatch):
    """The exact parser takes over at the record the fast one could not read; if that very
    record is malformed the error still names it."""
    monkeypatch.setattr(rec, "_WHOLE_READ_LIMIT", 0)
    path = tmp_path / "x.json"
    path.write_text('[{"a": 1}, {"instruction": "\\ud800 x", ]', encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.json: record 1: malformed JSON"):
        list(iter_records(path))


def test_dialogue_keys_take_a_slot_each_and_the_latest_entry_is_the_last_written(tmp_path):
    """gen_mt/gen_conv journal "i/step" keys: kept in arrays (not a dict entry per turn),
    looked up and listed as themselves; other string keys still work."""
    index = rec.JournalIndex(tmp_path / "j.jsonl")

    def fill():
        for i in range(200_000):
            for step in (0, 1):
                index.add(f"{i}/{step}", (2 * i + step) * 900)

    assert _peak_bytes(fill) < 8 * 2**20  # a dict entry per turn: ~50 MB
    assert len(index) == 400_000 and "199999/1" in index and "200000/0" not in index
    assert "01/1" not in index and "1/01" not in index
    out = tmp_path / "out.json"
    journal = Journal(out, {"stage": "t"})
    journal.append_many([("3/1", {"engine": "a"}), ("0/0", {"engine": "b"}), ("x", {"n": 1})])
    journal.append_many([("1/0", {"engine": "c"})])
    assert sorted(journal.done) == ["0/0", "1/0", "3/1", "x"]
    assert journal.done["3/1"] == {"engine": "a"} and journal.done.latest() == {"engine": "c"}
    journal.release()


@pytest.mark.parametrize(
    "name, text", [("a.jsonl", ""), ("b.jsonl", "\n  \n"), ("c.json", " \n"), ("d.json", "[]")]
)
def test_an_empty_file_is_refused_as_input_and_read_as_an_output(tmp_path, name, text):
    """A stage's input must hold a record; an output may hold none (a filter that kept
    nothing): `allow_empty` reads it as no records, anything malformed is still refused."""
    path = tmp_path / name
    path.write_text(text)
    if text != "[]":
        with pytest.raises(InputError, match=rf"{name}: file is empty"):
            list(iter_records(path))
    assert list(iter_records(path, allow_empty=True)) == []
    assert read_records(path, allow_empty=True) == []
    (tmp_path / "bad.jsonl").write_text("\n{oops\n")
    with pytest.raises(InputError, match=r"bad\.jsonl:2"):
        list(iter_records(tmp_path / "bad.jsonl", allow_empty=True))
