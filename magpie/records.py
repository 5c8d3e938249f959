"""Records on disk: read .json/.jsonl with clear errors, write atomically, journal and resume.

Every long stage writes each finished record to an append-only journal
(`.magpie/<output name>.journal.jsonl`) as soon as it is made. Re-running the same
command reads the journal back and skips what is done; the final file is written
atomically (temporary file + rename) and the journal removed. Total I/O stays O(N) and a
run killed at any moment loses at most the records in flight, never a written one, and
doubles none.

For a finished output, `.magpie/<output name>.meta.json` keeps the settings that made it
and the SHA-256 of its input (written atomically after the output). A rerun with the same
settings and input finds it complete; with other settings, another input, or an output
of unknown origin it stops with one line unless asked to `overwrite`. One run at a time
writes an output: the journal holds a lock (`.magpie/<output name>.lock`), and a second run
names the holder (pid, host, start time) and stops.

These files of magpie's own live in a hidden folder `.magpie/` beside the output (made
when first needed; see `state_path`), so an output folder holds only outputs.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import hashlib
import io
import json
import logging
import os
import re
import socket
import tempfile
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path

log = logging.getLogger("magpie")

# Whether journals opened now may replace an output made otherwise (see `overwriting`).
_OVERWRITE: contextvars.ContextVar[bool] = contextvars.ContextVar("overwrite", default=False)


@contextlib.contextmanager
def overwriting(on: bool = True) -> Iterator[None]:
    """Journals opened inside replace outputs made with other settings or input (a
    stage's --overwrite, passed through jobs that do not take it themselves)."""
    token = _OVERWRITE.set(bool(on))
    try:
        yield
    finally:
        _OVERWRITE.reset(token)


class InputError(Exception):
    """Bad input: a message for the user, ending the run with a non-zero exit."""


# JSON text may escape a UTF-16 surrogate without its pair ("\ud83d"): legal JSON, common in
# scraped text, but no character: Python reads it as a lone surrogate that cannot be written
# as UTF-8 or tokenised. The one reader replaces each with U+FFFD and marks the record.
REPAIRED_FIELD = "text_repaired"
REPAIRED_SURROGATE = "unpaired surrogate replaced with U+FFFD"
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Where one can be: a quick test of the raw text before looking through a record.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
# JSON whitespace: what may surround a record on its line (str.strip would also take
# U+2028, U+0085 ... which are text).
_JSON_SPACE = " \t\r\n"
# Files already reported on in this process (a stage may read its input twice).
_REPORTED: set[tuple] = set()


def read_records(path: str | os.PathLike, *, allow_empty: bool = False) -> list[dict]:
    """Records of a .json array or a .jsonl file, all in memory; errors name the file, line
    and problem. For large files use `iter_records`, which reads the same records one at a
    time.

    A .jsonl file holds one record per line, lines split on "\\n" only ("\\r\\n" too): any
    other character (U+2028, U+2029, U+0085, form feed ...) is text. A .json file holds an
    array of records, one record, or one object wrapping the array under a single key
    (`{"data": [...]}`, `{"train": [...]}`: read, and logged). Unpaired surrogates are
    repaired (see `REPAIRED_FIELD`) with one warning naming the file and the count."""
    return list(iter_records(path, allow_empty=allow_empty))


def iter_records(path: str | os.PathLike, *, allow_empty: bool = False) -> Iterator[dict]:
    """The records of a .json or .jsonl file one at a time, in order, as `read_records`
    reads them (same records, same errors; an empty .jsonl file, or a blank .json one, is
    refused: "file is empty", unless `allow_empty`: a stage's output may hold no record,
    an input may not), holding one record at a time: a .jsonl file
    line by line, a .json array element by element through ijson's incremental parser.
    Only a top-level object (one record, or a wrapper of records) is read whole."""
    path = _checked(path)
    if path.suffix == ".jsonl":
        yield from _jsonl_records(path, allow_empty)
        return
    first = _first_byte(path)
    if first == b"[":
        yield from _json_array_records(path)
    elif first or not allow_empty:
        yield from _whole_json_records(path)


def count_records(path: str | os.PathLike) -> int:
    """How many records `iter_records(path)` yields, without holding them: a .jsonl file's
    non-blank lines are counted as bytes (not parsed); a .json file is parsed."""
    path = _checked(path)
    if path.suffix != ".jsonl":
        return sum(1 for _ in iter_records(path))
    n = 0
    with open(path, "rb") as f:
        for raw in f:
            n += bool(raw.strip(b" \t\r\n"))
    return n


def _jsonl_records(path: Path, allow_empty: bool = False) -> Iterator[dict]:
    """A .jsonl file's records; one with none (no line, or blank lines only) is refused
    ("file is empty") once its end is reached."""
    repaired: list[str] = []
    count = 0
    try:
        with open(path, "rb") as f:  # bytes: lines end at b"\n" and nowhere else
            for lineno, raw in enumerate(f, start=1):
                record = _jsonl_record(path, lineno, raw)
                if record is None:
                    continue
                if _SURROGATE_ESCAPE_BYTES.search(raw) and _repair_record(record):
                    repaired.append(f"{path}:{lineno}")
                count += 1
                yield record
    finally:
        _report_repairs(path, repaired)
    if not count and not allow_empty:
        raise InputError(f"{path}: file is empty")


def _first_byte(path: Path) -> bytes:
    """The first byte of the file that is not JSON whitespace (b"" for none)."""
    with open(path, "rb") as f:
        while block := f.read(1 << 16):
            rest = block.lstrip(b" \t\r\n")
            if rest:
                return rest[:1]
    return b""


# A surrogate escape without its pair: ijson's C parser reads it as "?", losing it.
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
# What may follow a high surrogate escape at the end of a block: the start of its pair.
_PAIR_START = re.compile(rb"(\\(u([dD]([c-fC-F][0-9a-fA-F]?)?)?)?)?")
# Files up to this size are read whole by the standard library when the fast parser
# cannot go on (a lone surrogate, an integer beyond 64 bits, malformed JSON): its errors
# give the line.
_WHOLE_READ_LIMIT = 256 << 20


class _ParseAgain(Exception):
    """The fast parser cannot read on exactly (see `_LONE_SURROGATE`)."""


class _Watched:
    """A binary file read for ijson's C parser, watched for what that parser would not
    read exactly: the first block holding a lone surrogate escape raises _ParseAgain
    before the parser sees it (records already yielded came from earlier blocks)."""

    def __init__(self, f) -> None:
        self.f = f
        self.tail = b""  # the end of the last block: an escape may straddle two blocks

    def read(self, n: int = -1) -> bytes:
        block = self.f.read(n)
        text = self.tail + block
        for match in _LONE_SURROGATE.finditer(text):
            low = text[match.start() + 3] in b"cdefCDEF"
            if low and match.end() <= len(self.tail):
                continue  # checked with the block before, its predecessor in view
            if not low and block and _PAIR_START.fullmatch(text[match.end() :]):
                continue  # a high surrogate whose pair may go on in the next block
            raise _ParseAgain
        self.tail = text[-12:]  # room for a pair cut by the block's end
        return block


def _json_array_records(path: Path) -> Iterator[dict]:
    """A top-level JSON array, element by element (ijson, C backend). Where that parser
    cannot read on exactly, the rest is read by a slower exact one: the standard library
    for files up to _WHOLE_READ_LIMIT (its errors name the line), ijson's Python backend
    beyond."""
    import ijson

    done = 0
    try:
        with open(path, "rb") as f:
            for item in ijson.items(_Watched(f), "item", use_float=True):
                _check_item(path, done, item)
                yield item
                done += 1
        return
    except (_ParseAgain, ijson.JSONError) as e:
        problem = e
    if path.stat().st_size <= _WHOLE_READ_LIMIT:
        yield from islice(_whole_json_records(path), done, None)
        return
    if not isinstance(problem, _ParseAgain) and "integer overflow" not in str(problem):
        raise InputError(f"{path}: record {done}: malformed JSON ({_first_line(problem)})")
    from ijson.backends import python as exact

    repaired: list[str] = []
    i = done - 1
    try:
        with open(path, "rb") as f:
            items = islice(exact.items(f, "item", use_float=True), done, None)
            for i, item in enumerate(items, start=done):
                _check_item(path, i, item)
                if _repair_record(item):
                    repaired.append(where(path, i))
                yield item
    except ijson.JSONError as e:
        raise InputError(f"{path}: record {i + 1}: malformed JSON ({_first_line(e)})") from None
    finally:
        _report_repairs(path, repaired)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _check_item(path: Path, i: int, item) -> None:
    if not isinstance(item, dict):
        raise InputError(f"{path}: record {i}: expected a JSON object")


def _whole_json_records(path: Path) -> list[dict]:
    """A .json file read whole by the standard library (a top-level object, or an array
    the incremental parser could not read on)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text ({e.reason})") from None
    if not text.strip(_JSON_SPACE):
        raise InputError(f"{path}: file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    if isinstance(data, dict):
        data = _unwrapped(path, data)
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON array of records")
    for i, record in enumerate(data):
        _check_item(path, i, record)
    if _SURROGATE_ESCAPE.search(text):
        repaired = [i for i, record in enumerate(data) if _repair_record(record)]
        _report_repairs(path, [where(path, i) for i in repaired])
    return data


def _checked(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.suffix not in (".json", ".jsonl"):
        raise InputError(f"{path}: expected a .json or .jsonl file")
    return path


def _jsonl_record(path: Path, lineno: int, raw: bytes) -> dict | None:
    """The record on one line of a .jsonl file (None for a blank line)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}:{lineno}: not UTF-8 text ({e.reason})") from None
    if not line.strip(_JSON_SPACE):
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}:{lineno}: expected a JSON object")
    return record


# The fields a record's conversation is read from (magpie.conversation): the list
# fields, in the order they are looked for, and the flat instruction, response, reasoning
# and their _k forms for later exchanges.
LIST_FIELDS = ("conversations", "messages", "conversation")
FLAT_KEY = re.compile(r"^(instruction|response|reasoning)(?:_(\d+))?$")


def is_record(value: dict) -> bool:
    """Whether a JSON object is a record: it holds a conversation in one of the input
    formats magpie.conversation reads (instruction/response, conversations, messages,
    conversation, input/output)."""
    return any(k in LIST_FIELDS or k in ("input", "output") or FLAT_KEY.match(k) for k in value)


def _unwrapped(path: Path, data: dict) -> list | dict:
    """The records of a top-level object: itself when it is a record, else the list of
    objects under its one list-valued key (`{"data": [...]}`, logged); InputError when
    it has several list-valued keys or none."""
    if is_record(data):
        return [data]
    lists = [k for k, v in data.items() if isinstance(v, list)]
    if len(lists) > 1:
        raise InputError(
            f"{path}: a JSON object that is not a record and holds several lists "
            f"({', '.join(repr(k) for k in lists)}); expected an array of records, or an "
            "object with one key holding them: keep the one to read"
        )
    if not lists:
        keys = ", ".join(repr(k) for k in data) or "none"
        raise InputError(
            f"{path}: a JSON object that is neither a record (no instruction, response, "
            "conversations, messages, conversation or input field) nor a wrapper of "
            f"records (no key holds a list; keys: {keys}); expected an array of records"
        )
    key = lists[0]
    for i, item in enumerate(data[key]):
        if not isinstance(item, dict):
            raise InputError(
                f"{path}: key {key!r} item {i}: expected a JSON object (a record), got "
                f"{_json_type(item)}"
            )
    if _first_report(path, f"wrapper {key}"):
        log.info(
            "%s: a JSON object wrapping the records: read %d record(s) from its key %r",
            path,
            len(data[key]),
            key,
        )
    return data[key]


def _json_type(value) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    if value is None:
        return "null"
    return "an array" if isinstance(value, list) else names.get(type(value), "a value")


def _repair_record(record: dict) -> bool:
    """Replace unpaired surrogates in the record's keys and strings with U+FFFD and mark
    it (`REPAIRED_FIELD`); whether there were any. A paired escape ("\\ud83d\\ude00")
    was read as its character and is left alone."""
    repaired, changed = _repaired(record)
    if not changed:
        return False
    record.clear()
    record.update(repaired)
    record[REPAIRED_FIELD] = REPAIRED_SURROGATE
    return True


def _repaired(value) -> tuple[object, bool]:
    if isinstance(value, str):
        fixed = _SURROGATE.sub("\N{REPLACEMENT CHARACTER}", value)
        return fixed, fixed != value
    if isinstance(value, list):
        items = [_repaired(v) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    if isinstance(value, dict):
        out, changed = {}, False
        for k, v in value.items():
            key, c1 = _repaired(k)
            out[key], c2 = _repaired(v)
            changed = changed or c1 or c2
        return out, changed
    return value, False


def _first_report(path: Path, what: str) -> bool:
    """True the first time this process reports `what` about this version of the file."""
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size, what)
    except OSError:
        return True
    if key in _REPORTED:
        return False
    _REPORTED.add(key)
    return True


def _report_repairs(path: Path, where_repaired: list[str]) -> None:
    if where_repaired and _first_report(path, "surrogates"):
        log.warning(
            "%s: %d record(s) held unpaired UTF-16 surrogates (a \\ud800-\\udfff escape "
            "without its pair, first at %s): each replaced with U+FFFD, the record marked "
            '"%s": "%s"',
            path,
            len(where_repaired),
            where_repaired[0],
            REPAIRED_FIELD,
            REPAIRED_SURROGATE,
        )


def where(path: str | os.PathLike, index: int) -> str:
    """'file:line' for a .jsonl record, 'file: record i' for a .json one."""
    return f"{path}:{index + 1}" if str(path).endswith(".jsonl") else f"{path}: record {index}"


def require_text_field(records: list[dict], field: str, path: str | os.PathLike) -> None:
    """Every record must carry `field` as a string (it may be empty)."""
    for i, record in enumerate(records):
        value = record.get(field)
        if not isinstance(value, str):
            problem = "missing" if field not in record else f"not a string ({type(value).__name__})"
            raise InputError(f"{where(path, i)}: field '{field}' is {problem}")


def _escape_surrogates(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler of JSON writers: a lone surrogate in a record's text (made in
    memory; the reader repairs those it reads) is written as its JSON escape ("\\udXXX"),
    so the file stays valid UTF-8 and valid JSON and the write never fails."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(f"\\u{ord(c):04x}" for c in bad), error.end


JSON_ERRORS = "magpie.json_escape"  # `errors=` for files of JSON text (a codec error handler)
codecs.register_error(JSON_ERRORS, _escape_surrogates)


FORMATS = ("json", "jsonl")


def saved_as(path: str | os.PathLike, save_as: str) -> Path:
    """`path` (a default output name) with the extension of the format `save_as`: "json"
    (one array, the original's format) or "jsonl" (a record per line); InputError for
    anything else."""
    if save_as not in FORMATS:
        raise InputError(f"--save_as must be json or jsonl, not '{save_as}'")
    return Path(path).with_suffix(f".{save_as}")


def write_records(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records atomically (see `RecordWriter`), one at a time as the iterable yields
    them; returns how many were written."""
    with RecordWriter(path) as out:
        for record in records:
            out.write(record)
    return out.count


class RecordWriter:
    """Writes records to `path` one at a time, holding none: a .jsonl file one record per
    line, a .json file as the array `json.dump(records, indent=2)` writes (the original's
    format, byte for byte), element by element. Atomic: the records go to a temporary
    file beside `path`, renamed over it when the `with` block ends without an error (a
    reader sees the old file or the whole new one, never half); on an error it is removed.
    Text is written as is (UTF-8; a line separator inside a string is escaped or stays
    text); a lone surrogate is written as its escape."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.jsonl = self.path.suffix == ".jsonl"
        self.count = 0
        self._file = None
        self._tmp = None

    def __enter__(self) -> RecordWriter:
        self._file, self._tmp = _temporary_beside(self.path)
        if not self.jsonl:
            self._file.write(b"[")
        return self

    def write(self, record: dict) -> None:
        """Append one record."""
        if self.jsonl:
            text = json.dumps(record, ensure_ascii=False) + "\n"
        else:
            text = json.dumps(record, ensure_ascii=False, indent=2).replace("\n", "\n  ")
            text = ("\n  " if self.count == 0 else ",\n  ") + text
        self._file.write(text.encode("utf-8", errors=JSON_ERRORS))
        self.count += 1

    def __exit__(self, kind, error, trace) -> None:
        f, tmp = self._file, self._tmp
        try:
            try:
                if kind is None:
                    if not self.jsonl:
                        f.write(b"\n]\n" if self.count else b"]\n")
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                f.close()
            if kind is None:
                os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _temporary_beside(path: Path):
    """(binary file, its path): a new temporary file in `path`'s folder, with the
    permissions an ordinary new file gets (mkstemp makes owner-only files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return os.fdopen(fd, "wb"), tmp


def write_json(path: str | os.PathLike, value) -> None:
    """Write one JSON value atomically (temporary file + rename)."""
    text = json.dumps(value, ensure_ascii=False, indent=2) + "\n"
    _write_atomically(path, lambda f: f.write(text), errors=JSON_ERRORS)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically: a reader sees the old file or the whole new one."""
    _write_atomically(path, lambda f: f.write(text))


def _write_atomically(path: str | os.PathLike, write, errors: str = "strict") -> None:
    """`write(f)` into a temporary text file beside `path`, synced, then renamed over it."""
    f, tmp = _temporary_beside(Path(path))
    try:
        with io.TextIOWrapper(f, encoding="utf-8", errors=errors) as text:
            write(text)
            text.flush()
            os.fsync(text.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


STATE_DIR = ".magpie"


def state_path(output: str | os.PathLike, suffix: str) -> Path:
    """Where magpie keeps its own file `suffix` (".lock", ".lock.owner", ".meta.json",
    ".journal.jsonl") for `output`: `<output's folder>/.magpie/<output name><suffix>`, so
    one output's files sort together and the output folder holds only outputs. The folder
    is made by whoever writes there first."""
    output = Path(output)
    return output.parent / STATE_DIR / f"{output.name}{suffix}"


def meta_path(output: str | os.PathLike) -> Path:
    """Where the settings and input fingerprint of `output` are kept."""
    return state_path(output, ".meta.json")


def read_meta(output: str | os.PathLike) -> dict:
    """An output's meta file as a dict; {} when it has none or it cannot be read (for the
    funnel's readers, the card and the report page, which show what they can)."""
    try:
        meta = json.loads(meta_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def meta_settings(output: str | os.PathLike) -> dict:
    """The settings of an output's meta file ({} as for `read_meta`)."""
    settings = read_meta(output).get("settings")
    return settings if isinstance(settings, dict) else {}


def _old_meta_path(output: str | os.PathLike) -> Path:
    """Where magpie before the `.magpie/` folder kept it: beside the output."""
    return Path(f"{output}.meta.json")


def output_meta(fingerprint: dict) -> dict:
    """What the meta file (`meta_path`) holds for a run: its settings and, when the settings
    name an input file (`input`), that file's SHA-256."""
    source = fingerprint.get("input")
    digest = file_sha256(source) if isinstance(source, str) and os.path.isfile(source) else None
    # As it reads back from JSON (tuples as lists...), so that comparisons are fair.
    return json.loads(json.dumps({"settings": fingerprint, "input_sha256": digest}))


def _differences(stored: dict, wanted: dict) -> list[str]:
    settings_a, settings_b = stored.get("settings") or {}, wanted.get("settings") or {}
    changed = sorted(
        k for k in set(settings_a) | set(settings_b) if settings_a.get(k) != settings_b.get(k)
    )
    if stored.get("input_sha256") != wanted.get("input_sha256"):
        changed.append("input file contents")
    return changed


def check_finished_output(
    output: str | os.PathLike,
    fingerprint: dict,
    overwrite: bool = False,
    keys: list[str] | None = None,
    meta: dict | None = None,
) -> bool:
    """Whether `output` is a finished output of these settings and input (True: nothing to
    do). False when there is none, or it is to be replaced (`overwrite`). An output made
    otherwise, or of unknown origin, raises InputError. `keys` limits the comparison to
    those settings (what a caller knows before loading a model); `meta` is
    output_meta(fingerprint) when the caller has it already."""
    output = Path(output)
    if not output.exists() or state_path(output, ".journal.jsonl").exists():
        return False
    wanted = meta or output_meta(fingerprint)
    try:
        stored = json.loads(meta_path(output).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        stored = None
    if stored is not None and keys is not None:
        stored = {**stored, "settings": {k: stored["settings"].get(k) for k in keys}}
        wanted = {**wanted, "settings": {k: wanted["settings"].get(k) for k in keys}}
    if stored is not None and not _differences(stored, wanted):
        return True
    if overwrite:
        return False
    if stored is None and _old_meta_path(output).exists():
        raise InputError(
            f"{output}: made by an earlier magpie version, which kept its settings beside it "
            f"in {_old_meta_path(output)} (now {meta_path(output)}); pass --overwrite once "
            "to remake it"
        )
    if stored is None:
        raise InputError(
            f"{output}: exists, with no {meta_path(output)} to say what made it; pass "
            "--overwrite to replace it"
        )
    raise InputError(
        f"{output}: already made with other {', '.join(_differences(stored, wanted))}; pass "
        "--overwrite to replace it, or choose another output"
    )


_HELD: dict[str, object] = {}  # output lock path -> this process's lock on it


def lock_output(output: str | os.PathLike):
    """Take the output's lock (`state_path(output, ".lock")`) for this process, or raise
    InputError naming its holder."""
    from filelock import FileLock, Timeout

    path = state_path(output, ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    stale = _HELD.pop(key, None)  # an earlier journal of this process that never finished
    if stale is not None:
        stale.release(force=True)
    lock = FileLock(str(path), timeout=0)
    owner = state_path(output, ".lock.owner")
    try:
        lock.acquire()
    except Timeout:
        try:
            who = json.loads(owner.read_text(encoding="utf-8"))
            holder = f"pid {who['pid']} on {who['host']}, started {who['started']}"
        except (OSError, ValueError, KeyError):
            holder = "a process that has not yet said who it is"
        raise InputError(
            f"{output}: another run is writing it ({holder}); wait for it to end or stop it"
        ) from None
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    write_json(owner, {"pid": os.getpid(), "host": socket.gethostname(), "started": started})
    _HELD[key] = lock
    return lock


def unlock_output(output: str | os.PathLike, lock) -> None:
    """Release a lock taken by lock_output (its files stay: removing them would race)."""
    key = str(state_path(output, ".lock").resolve())
    if _HELD.get(key) is lock:
        del _HELD[key]
    lock.release(force=True)


class Journal:
    """Append-only record of finished work for one output file.

    The first line holds the run's settings (`fingerprint`) and its input's SHA-256;
    resuming with other settings or a changed input is refused, since mixing them would
    silently corrupt the output. Each further line is one finished record under its key
    (`{"key": k, "record": {...}}`). `done` maps keys to records, but holds only where each
    line starts in the file (see `JournalIndex`): a record is read back when asked for, so
    a run of millions of records keeps a few bytes per record in memory. A line cut short
    by a kill is dropped on resume.

    A finished output with the same settings and input sets `complete` (the stage has
    nothing to do); one made otherwise is refused unless `overwrite`. The journal locks
    the output for this run until `finish` or `release`.
    """

    def __init__(self, output: str | os.PathLike, fingerprint: dict, overwrite: bool | None = None):
        self.output = Path(output)
        self.path = state_path(output, ".journal.jsonl")
        self.fingerprint = fingerprint
        self.done = JournalIndex(self.path)
        self._file = None
        if overwrite is None:
            overwrite = _OVERWRITE.get()
        self._lock = lock_output(self.output)
        try:
            self.meta = output_meta(fingerprint)
            self.complete = check_finished_output(
                self.output, fingerprint, overwrite, meta=self.meta
            )
            if not self.complete:
                self._load(overwrite)
        except BaseException:
            self.release()
            raise
        if self.complete:
            self.release()  # nothing to write

    def _load(self, overwrite: bool = False) -> None:
        """Index the lines of an earlier run's journal (keys and offsets; records stay on
        disk), after checking its header; a last line cut short by a kill is cut off."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            first = f.readline()
            if not first.endswith(b"\n") or not first.strip(_JSON_SPACE.encode()):
                good = 0
            else:
                good = len(first)
                header = json.loads(first)
                changed = sorted(
                    k
                    for k in set(header.get("__journal__") or {}) | set(self.fingerprint)
                    if (header.get("__journal__") or {}).get(k) != self.fingerprint.get(k)
                )
                stored_input = header.get("__input_sha256__", self.meta["input_sha256"])
                if stored_input != self.meta["input_sha256"]:
                    changed.append("input file contents")
                if changed and overwrite:
                    f.close()
                    os.remove(self.path)  # an unfinished run with other settings: start over
                    return
                if changed:
                    raise InputError(
                        f"{self.path}: an unfinished run with other settings "
                        f"({', '.join(changed)}) left this journal; rerun with the same "
                        "arguments to resume it, or pass --overwrite (or delete it) to start over"
                    )
                for line in f:
                    if not line.endswith(b"\n"):
                        break  # cut short by a kill
                    if line.strip(_JSON_SPACE.encode()):
                        self.done.add(_entry_key(line), good)
                    good += len(line)
        if good != self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good)

    def pending(self, input_file: str | os.PathLike) -> Iterator[tuple[int, dict]]:
        """(index, record) of the input's records not yet journaled (under their index),
        read from the file as they are asked for: a step's `todo` over a large input."""
        for i, record in enumerate(iter_records(input_file)):
            if i not in self.done:
                yield i, record

    def in_order(self, count: int) -> Iterator[dict]:
        """The journaled records of keys 0..count-1, in order, read back one at a time
        (what `finish` writes, streamed)."""
        for i in range(count):
            yield self.done[i]

    def append(self, key, record: dict) -> None:
        self.append_many([(key, record)], sync=False)

    def append_many(self, entries: Iterable[tuple], sync: bool = True) -> None:
        """Journal (key, record) pairs in one write; with `sync` they are on disk before
        this returns (a chunk committed by the Ray executor survives a crash of the node)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")
            if self._file.tell() == 0:
                header = {
                    "__journal__": self.fingerprint,
                    "__input_sha256__": self.meta["input_sha256"],
                }
                self._file.write((json.dumps(header) + "\n").encode("utf-8", JSON_ERRORS))
        lines, offsets, at = [], [], self._file.tell()
        for key, record in entries:
            line = json.dumps({"key": key, "record": record}, ensure_ascii=False) + "\n"
            line = line.encode("utf-8", JSON_ERRORS)
            lines.append(line)
            offsets.append((key, at))
            at += len(line)
        self._file.write(b"".join(lines))
        self._file.flush()  # in the OS after each write: a killed process loses none
        if sync:
            os.fsync(self._file.fileno())
        for key, offset in offsets:
            self.done.add(key, offset)

    def finish(self, records: Iterable[dict]) -> None:
        """Write the final output atomically from `records` (an iterable, typically read
        back from `done` in order: streamed, never held), then its meta file, then drop
        the journal and the lock."""
        self.close()
        write_records(self.output, records)
        write_json(meta_path(self.output), self.meta)
        # An earlier version's meta file beside the output describes what was replaced.
        _old_meta_path(self.output).unlink(missing_ok=True)
        self.done.close()
        if self.path.exists():
            os.remove(self.path)
        self.release()

    def close(self) -> None:
        """Sync and close the journal file (and the index's reader; it reopens if asked)."""
        self.done.close()
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def release(self) -> None:
        """Let other runs write this output (the journal stays for a resume)."""
        if self._lock is not None:
            unlock_output(self.output, self._lock)
            self._lock = None


# A journal line as `Journal.append_many` writes it starts with its key.
_KEY_PREFIX = re.compile(rb'\{"key": (-?\d+|"(?:[^"\\]|\\.)*"), "record": ')


def _entry_key(line: bytes):
    """The key of one journal line, read from its start (the record is not parsed)."""
    match = _KEY_PREFIX.match(line)
    if match:
        return json.loads(match.group(1))
    return json.loads(line)["key"]


# A dialogue stage's key: "<conversation>/<turn step>".
_TURN_KEY = re.compile(r"(\d{1,12})/(\d{1,2})")


class JournalIndex(Mapping):
    """Journal keys -> records, holding only each record's offset in the journal file: an
    8-byte slot per key for keys 0..n-1 (an array) and for dialogue keys "i/step" (an
    array per step), a dict entry for other keys. A record is read back from the file
    when looked up (`journal.done[k]`), so iterating over `done[i] for i in range(n)`
    streams the output in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._slots = array("q")  # offset + 1 per integer key; 0: not done
        self._turns: dict[int, array] = {}  # step -> offset + 1 per conversation
        self._other: dict = {}
        self._count = 0
        self._reader = None

    def _array_slot(self, key, grow: bool = False) -> tuple[array, int] | None:
        """(array, index) holding `key`'s slot, or None for a key kept in the dict."""
        if type(key) is int:
            if not 0 <= key < (1 << 40):
                return None
            slots, i = self._slots, key
        elif type(key) is str and (match := _TURN_KEY.fullmatch(key)):
            i, step = int(match.group(1)), int(match.group(2))
            if str(i) != match.group(1) or str(step) != match.group(2):
                return None  # "01/2" is not "1/2"
            slots = self._turns.setdefault(step, array("q")) if grow else self._turns.get(step)
            if slots is None:
                return None
        else:
            return None
        if grow and i >= len(slots):
            slots.extend(array("q", bytes(8 * max(i + 1 - len(slots), len(slots) // 2, 1024))))
        return (slots, i) if i < len(slots) else None

    def add(self, key, offset: int) -> None:
        slot = self._array_slot(key, grow=True)
        if slot is not None:
            slots, i = slot
            self._count += slots[i] == 0
            slots[i] = offset + 1
        else:
            self._count += key not in self._other
            self._other[key] = offset

    def _offset(self, key) -> int | None:
        slot = self._array_slot(key)
        if slot is not None:
            slots, i = slot
            return slots[i] - 1 if slots[i] else None
        return self._other.get(key)

    def latest(self):
        """The record written last (at the greatest offset), None when there is none."""
        ends = [max(a) - 1 for a in (self._slots, *self._turns.values()) if len(a)]
        ends += self._other.values()
        offset = max(ends, default=-1)
        return None if offset < 0 else self._read(offset)

    def __contains__(self, key) -> bool:
        return self._offset(key) is not None

    def __getitem__(self, key):
        offset = self._offset(key)
        if offset is None:
            raise KeyError(key)
        return self._read(offset)

    def _read(self, offset: int):
        if self._reader is None:
            self._reader = open(self.path, "rb")
        self._reader.seek(offset)
        return json.loads(self._reader.readline())["record"]

    def __iter__(self) -> Iterator:
        for key, slot in enumerate(self._slots):
            if slot:
                yield key
        for step, slots in sorted(self._turns.items()):
            for i, slot in enumerate(slots):
                if slot:
                    yield f"{i}/{step}"
        yield from self._other

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class Spool:
    """JSON values set aside in an unnamed temporary file as they come, read back by their
    number in any order: for a stage whose output order (a shuffle, a sort by length) is
    known only once every record has been read (filter's kept records, gen_dis's texts,
    gen_po_pairs' pairs), so that millions of them are not held meanwhile. Holds 8 bytes
    per value (where its line starts). The file has no name: it disappears when closed,
    or when the process dies. ASCII JSON, so every string (a lone surrogate too) reads
    back exactly."""

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.file = tempfile.TemporaryFile(dir=folder)
        self.starts = array("q")
        self._end = 0

    def add(self, value) -> None:
        line = (json.dumps(value) + "\n").encode("ascii")
        self.starts.append(self._end)
        self.file.write(line)
        self._end += len(line)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, n: int):
        self.file.seek(self.starts[n])
        return json.loads(self.file.readline())

    def read(self, positions: Iterable[int]) -> Iterator:
        """The values at `positions`, in that order, one at a time."""
        for n in positions:
            yield self[n]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MemoryJournal:
    """As much of `Journal` as the executors use, kept in memory: for steps that are not
    resumed (embeddings are remade in minutes) and for runs without a file (tests,
    benchmarks)."""

    complete = False

    def __init__(self) -> None:
        self.done: dict = {}

    def append(self, key, entry) -> None:
        self.done[key] = entry

    def append_many(self, entries, sync: bool = True) -> None:
        self.done.update(entries)

    def close(self) -> None:
        pass
