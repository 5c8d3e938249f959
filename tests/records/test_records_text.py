"""Text is data (issue 21): what a record holds reads back identically through the one
reader (magpie.records) and the stages that write records (concat, filter); lone UTF-16
surrogates are repaired and marked; a .json object wrapping the records is read or
refused with one line. Input files are built by hand, byte by byte; expected values are
written here, not taken from the code's output."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from magpie.records import InputError, Journal, iter_records, read_records, write_records

REPO = Path(__file__).resolve().parents[2]
REPAIRED = {"text_repaired": "unpaired surrogate replaced with U+FFFD"}

# Characters str.splitlines() breaks on besides \n, \r: (raw UTF-8 bytes in the file as
# a JSON writer puts them, the character). JSON must escape control characters below
# U+0020, so those are written as \u escapes; U+0085, U+2028, U+2029 may stand raw (our
# writer, ensure_ascii=False, keeps them raw).
SEPARATORS = [
    (b"\xe2\x80\xa8", "\u2028"),  # LINE SEPARATOR, raw
    (b"\xe2\x80\xa9", "\u2029"),  # PARAGRAPH SEPARATOR, raw
    (b"\xc2\x85", "\x85"),  # NEXT LINE, raw
    (b"\\u2028", "\u2028"),  # the same, escaped
    (b"\\u000b", "\x0b"),  # LINE TABULATION
    (b"\\u000c", "\x0c"),  # FORM FEED
    (b"\\f", "\x0c"),  # FORM FEED, JSON's short escape
    (b"\\u001c", "\x1c"),  # FILE SEPARATOR
    (b"\\u001d", "\x1d"),  # GROUP SEPARATOR
    (b"\\u001e", "\x1e"),  # RECORD SEPARATOR
    (b"\\r\\n", "\r\n"),  # an escaped CR LF inside the text
]
IDS = [
    "LS raw",
    "PS raw",
    "NEL raw",
    "LS escaped",
    "VT",
    "FF",
    "FF short",
    "FS",
    "GS",
    "RS",
    "CRLF escaped",
]


def jsonl_bytes(raw: bytes, eol: bytes = b"\n") -> bytes:
    """Two records with the separator inside their instruction and response."""
    return (
        b'{"id": 0, "instruction": "Split'
        + raw
        + b'here?", "response": "No'
        + raw
        + b'."}'
        + eol
        + b'{"id": 1, "instruction": "'
        + raw
        + b'Why?", "response": "end'
        + raw
        + b'"}'
        + eol
    )


def expected(ch: str) -> list[dict]:
    return [
        {"id": 0, "instruction": f"Split{ch}here?", "response": f"No{ch}."},
        {"id": 1, "instruction": f"{ch}Why?", "response": f"end{ch}"},
    ]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


# ---------------------------------------------------------------------------------------
# Separators: read -> write -> read


@pytest.mark.parametrize("raw, ch", SEPARATORS, ids=IDS)
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_separators_in_jsonl_read_back_identically(tmp_path, raw, ch, eol):
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl_bytes(raw, eol))
    assert read_records(src) == expected(ch)
    assert list(iter_records(src)) == expected(ch)
    for suffix in (".jsonl", ".json"):
        out = tmp_path / f"out{suffix}"
        write_records(out, read_records(src))
        assert read_records(out) == expected(ch)
        assert list(iter_records(out)) == expected(ch)


@pytest.mark.parametrize("raw, ch", SEPARATORS, ids=IDS)
def test_separators_in_json_read_back_identically(tmp_path, raw, ch):
    src = tmp_path / "in.json"
    src.write_bytes(b"[\n" + jsonl_bytes(raw).replace(b"}\n{", b"},\n{") + b"]\n")
    assert read_records(src) == expected(ch)
    out = tmp_path / "out.jsonl"
    write_records(out, read_records(src))
    assert read_records(out) == expected(ch)


def test_the_writer_keeps_line_separators_raw_and_each_record_on_one_line(tmp_path):
    out = tmp_path / "out.jsonl"
    write_records(out, [{"instruction": "a\u2028b\u2029c\x85d"}, {"instruction": "e"}])
    data = out.read_bytes()
    assert data.count(b"\n") == 2  # one line per record
    assert b"a\xe2\x80\xa8b\xe2\x80\xa9c\xc2\x85d" in data  # raw, as ensure_ascii=False
    assert read_records(out) == [{"instruction": "a\u2028b\u2029c\x85d"}, {"instruction": "e"}]


def test_a_raw_control_character_is_malformed_json_on_its_own_line(tmp_path):
    """A raw VT (illegal in a JSON string) is refused at the line it is on, not split."""
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b'{"instruction": "ok"}\n{"instruction": "a\x0bb"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: malformed JSON"):
        read_records(src)


def test_not_utf8_is_refused_with_file_and_line(tmp_path):
    src = tmp_path / "latin1.jsonl"
    src.write_bytes(b'{"instruction": "ok"}\n{"instruction": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"latin1\.jsonl:2: not UTF-8 text"):
        read_records(src)
    src = tmp_path / "latin1.json"
    src.write_bytes(b'[{"instruction": "ok"},\n {"instruction": "caf\xe9"}]')
    with pytest.raises(InputError, match=r"latin1\.json:2: not UTF-8 text"):
        read_records(src)


def sharegpt_texts(path: Path) -> list[list[str]]:
    return [[t["value"] for t in r["conversations"]] for r in read_records(path)]


@pytest.mark.parametrize(
    "raw, ch", [SEPARATORS[0], SEPARATORS[2], SEPARATORS[4]], ids=IDS[:1] + IDS[2:3] + IDS[4:5]
)
def test_concat_then_filter_then_concat_through_the_clis(tmp_path, raw, ch):
    """concat writes U+2028 / U+0085 raw; filter and concat read that file back (they
    rejected it as malformed JSON before)."""
    src = tmp_path / "shard.jsonl"
    src.write_bytes(jsonl_bytes(raw))
    want = [[f"Split{ch}here?", f"No{ch}."], [f"{ch}Why?", f"end{ch}"]]
    first = tmp_path / "a_sharegpt.jsonl"
    proc = run("exp/concat.py", str(src), "--output_file", str(first))
    assert proc.returncode == 0, proc.stderr
    assert sharegpt_texts(first) == want
    assert [r["instruction"] for r in read_records(first)] == [want[0][0], want[1][0]]

    kept, rejected = tmp_path / "kept.jsonl", tmp_path / "rejected.jsonl"
    proc = run(
        "exp/filter.py",
        "--input_file",
        str(first),
        "--output_file",
        str(kept),
        "--rejected_file",
        str(rejected),
    )
    assert proc.returncode == 0, proc.stderr
    assert "records in 2, kept 2" in proc.stdout
    assert sharegpt_texts(kept) == want

    second = tmp_path / "b_sharegpt.jsonl"
    proc = run("exp/concat.py", str(kept), "--output_file", str(second), "--id_prefix", "b")
    assert proc.returncode == 0, proc.stderr
    assert sharegpt_texts(second) == want


def test_the_journal_reads_back_separators(tmp_path):
    """A resumed run reads its journal on "\\n" only: a U+2028 in a journalled record is
    text, not the end of an entry."""
    out = tmp_path / "out.jsonl"
    journal = Journal(out, {"stage": "t"})
    journal.append(0, {"instruction": "a\u2028b\x85c"})
    journal.close()
    journal.release()
    again = Journal(out, {"stage": "t"})
    assert again.done == {0: {"instruction": "a\u2028b\x85c"}}
    again.release()


# ---------------------------------------------------------------------------------------
# Surrogates

# (JSON string body as in the file, the text it must read as)
LONE = [
    (b"\\ud83d", "\ufffd"),  # high alone
    (b"\\ude00", "\ufffd"),  # low alone
    (b"\\ud83dabc", "\ufffdabc"),  # high at the start
    (b"abc\\udbffdef", "abc\ufffddef"),  # high in the middle
    (b"abc\\udc00", "abc\ufffd"),  # low at the end
    (b"\\udfffxyz", "\ufffdxyz"),  # low at the start
    (b"x\\ude00\\ud83dy", "x\ufffd\ufffdy"),  # low then high: no pair, two repairs
    (b"\\ud83d\\ud83d\\ude00", "\ufffd\U0001f600"),  # a lone high before a pair
]


def one_record_file(tmp_path: Path, body: bytes, suffix: str) -> Path:
    line = b'{"id": 7, "instruction": "' + body + b'", "response": "fine"}'
    path = tmp_path / f"in{suffix}"
    path.write_bytes(line + b"\n" if suffix == ".jsonl" else b"[" + line + b"]")
    return path


@pytest.mark.parametrize("body, text", LONE)
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_lone_surrogates_are_repaired_and_marked(tmp_path, caplog, body, text, suffix):
    src = one_record_file(tmp_path, body, suffix)
    want = {"id": 7, "instruction": text, "response": "fine", **REPAIRED}
    with caplog.at_level(logging.WARNING, logger="magpie"):
        assert read_records(src) == [want]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"{src}: 1 record(s) held unpaired UTF-16 surrogates")
    # Written and read again: the same text, the mark kept, nothing left to repair.
    for out_suffix in (".jsonl", ".json"):
        out = tmp_path / f"out{out_suffix}"
        write_records(out, read_records(src))
        assert read_records(out) == [want]
        out.read_bytes().decode("utf-8")  # valid UTF-8


def test_surrogates_in_nested_fields_and_the_count_of_records(tmp_path, caplog):
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b'{"conversations": [{"from": "human", "value": "hi \\ud800"}, '
        b'{"from": "gpt", "value": "ok"}]}\n'
        b'{"instruction": "clean \\ud83d\\ude00", "response": "ok"}\n'
        b'{"instruction": "q", "response": "a", "tags": ["\\udc01"]}\n'
    )
    with caplog.at_level(logging.WARNING, logger="magpie"):
        records = read_records(src)
    assert records == [
        {
            "conversations": [
                {"from": "human", "value": "hi \ufffd"},
                {"from": "gpt", "value": "ok"},
            ],
            **REPAIRED,
        },
        {"instruction": "clean \U0001f600", "response": "ok"},
        {"instruction": "q", "response": "a", "tags": ["\ufffd"], **REPAIRED},
    ]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"{src}: 2 record(s) held unpaired UTF-16 surrogates")
    assert f"first at {src}:1" in warning


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_paired_surrogate_escapes_are_their_character(tmp_path, caplog, suffix):
    body = b"smile \\ud83d\\ude00, \\uD83D\\uDE00 and raw \xf0\x9f\x98\x80; \\\\ud83d stays text"
    src = one_record_file(tmp_path, body, suffix)
    with caplog.at_level(logging.WARNING, logger="magpie"):
        records = read_records(src)
    text = "smile \U0001f600, \U0001f600 and raw \U0001f600; \\ud83d stays text"
    assert records == [{"id": 7, "instruction": text, "response": "fine"}]
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    out = tmp_path / f"out{suffix}"
    write_records(out, records)
    assert read_records(out) == records


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_writing_a_lone_surrogate_never_crashes(tmp_path, suffix):
    """A record made in memory (not read) may hold one: written as its escape."""
    out = tmp_path / f"out{suffix}"
    write_records(out, [{"instruction": "a\ud83db", "\udc00key": "v"}])
    data = out.read_bytes()
    data.decode("utf-8")
    assert b"a\\ud83db" in data and b"\\udc00key" in data
    assert read_records(out) == [{"instruction": "a\ufffdb", "\ufffdkey": "v", **REPAIRED}]
    journal = Journal(tmp_path / "j.jsonl", {"stage": "t"})
    journal.append(0, {"instruction": "a\ud83db"})
    journal.finish([{"instruction": "a\ud83db"}])
    assert read_records(tmp_path / "j.jsonl") == [{"instruction": "a\ufffdb", **REPAIRED}]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_concat_and_filter_clis_repair_lone_surrogates(tmp_path, suffix):
    src = tmp_path / f"shard{suffix}"
    lines = [
        b'{"id": 0, "instruction": "Why \\ud83d?", "response": "Because \\ude00"}',
        b'{"id": 1, "instruction": "Smile \\ud83d\\ude00", "response": "Yes"}',
    ]
    src.write_bytes(
        b"".join(x + b"\n" for x in lines) if suffix == ".jsonl" else b"[" + b",".join(lines) + b"]"
    )
    out = tmp_path / "c_sharegpt.jsonl"
    proc = run("exp/concat.py", str(src), "--output_file", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"{src}: 1 record(s) held unpaired UTF-16 surrogates" in proc.stderr
    assert proc.stderr.count("unpaired UTF-16 surrogates") == 1  # read twice, said once
    records = read_records(out)
    assert sharegpt_texts(out) == [["Why \ufffd?", "Because \ufffd"], ["Smile \U0001f600", "Yes"]]
    assert [r.get("text_repaired") for r in records] == [REPAIRED["text_repaired"], None]

    kept = tmp_path / "kept.jsonl"
    proc = run(
        "exp/filter.py",
        "--input_file",
        str(src),
        "--output_file",
        str(kept),
        "--rejected_file",
        str(tmp_path / "rej.jsonl"),
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{src}: 1 record(s) held unpaired UTF-16 surrogates" in proc.stderr
    assert read_records(kept) == [
        {"id": 0, "instruction": "Why \ufffd?", "response": "Because \ufffd", **REPAIRED},
        {"id": 1, "instruction": "Smile \U0001f600", "response": "Yes"},
    ]


# ---------------------------------------------------------------------------------------
# Shapes of a .json file

RECS = [{"instruction": "Hi", "response": "Hello"}, {"instruction": "Bye", "response": "Ciao"}]


@pytest.mark.parametrize("key", ["data", "train", "rows"])
def test_an_object_wrapping_the_records_under_one_key_is_read(tmp_path, caplog, key):
    src = tmp_path / "export.json"
    src.write_text(json.dumps({key: RECS, "version": "1.0", "count": 2}), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="magpie"):
        assert read_records(src) == RECS
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (
        f"{src}: a JSON object wrapping the records: read 2 record(s) from its key '{key}'"
    )


def test_an_empty_wrapped_list_is_zero_records(tmp_path):
    src = tmp_path / "export.json"
    src.write_text('{"data": []}', encoding="utf-8")
    assert read_records(src) == []


@pytest.mark.parametrize(
    "record",
    [
        {"instruction": "Hi", "response": "Hello", "other_task_category": ["Math"]},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]},
        {"messages": [{"role": "user", "content": "Hi"}]},
        {"input": "Hi", "output": "Hello"},
        {"instruction_2": "x"},
    ],
)
def test_a_single_record_object_is_still_one_record(tmp_path, record):
    src = tmp_path / "one.json"
    src.write_text(json.dumps(record), encoding="utf-8")
    assert read_records(src) == [record]


@pytest.mark.parametrize(
    "value, message",
    [
        (
            {"train": RECS, "test": RECS},
            "a JSON object that is not a record and holds several lists ('train', 'test')",
        ),
        (
            {"data": RECS, "labels": ["a", "b"]},
            "a JSON object that is not a record and holds several lists ('data', 'labels')",
        ),
        (
            {"data": {"rows": RECS}},
            "a JSON object that is neither a record (no instruction, response, "
            "conversations, messages, conversation or input field) nor a wrapper of "
            "records (no key holds a list; keys: 'data')",
        ),
        ({}, "nor a wrapper of records (no key holds a list; keys: none)"),
        ({"data": [1, 2]}, "key 'data' item 0: expected a JSON object (a record), got a number"),
        (
            {"rows": [RECS[0], "x"]},
            "key 'rows' item 1: expected a JSON object (a record), got a string",
        ),
        (
            {"data": [[RECS[0]]]},
            "key 'data' item 0: expected a JSON object (a record), got an array",
        ),
    ],
)
def test_objects_of_the_wrong_shape_are_refused_with_one_line(tmp_path, value, message):
    src = tmp_path / "odd.json"
    src.write_text(json.dumps(value), encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_records(src)
    assert str(err.value).startswith(f"{src}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_concat_cli_reads_a_wrapper_and_refuses_an_ambiguous_one(tmp_path):
    src = tmp_path / "export.json"
    src.write_text(json.dumps({"data": RECS}), encoding="utf-8")
    out = tmp_path / "w_sharegpt.jsonl"
    proc = run("exp/concat.py", str(src), "--output_file", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"{src}: a JSON object wrapping the records: read 2 record(s) from its key 'data'" in (
        proc.stderr
    )
    assert sharegpt_texts(out) == [["Hi", "Hello"], ["Bye", "Ciao"]]
    assert "records in 2, out 2" in proc.stdout

    bad = tmp_path / "splits.json"
    bad.write_text(json.dumps({"train": RECS, "test": RECS}), encoding="utf-8")
    out = tmp_path / "x_sharegpt.jsonl"
    proc = run("exp/concat.py", str(bad), "--output_file", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {bad}: a JSON object that is not a record and holds several lists "
        "('train', 'test'); expected an array of records, or an object with one key "
        "holding them: keep the one to read"
    )
    assert not out.exists()


def test_filter_cli_refuses_a_list_of_non_objects_and_writes_nothing(tmp_path):
    bad = tmp_path / "odd.json"
    bad.write_text(json.dumps({"rows": ["Hi", "Bye"]}), encoding="utf-8")
    proc = run("exp/filter.py", "--input_file", str(bad), "--config", "magpie")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {bad}: key 'rows' item 0: expected a JSON object (a record), got a string"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.json"]
