"""Records on disk: read .json/.jsonl with clear errors, write atomically, journal and resume.

Every long stage writes each finished record to an append-only journal
(`<output>.journal.jsonl`) as soon as it is made. Re-running the same command reads the
journal back and skips what is done; the final file is written atomically (temporary file
+ rename) and the journal removed. Total I/O stays O(N) and a run killed at any moment
loses at most the records in flight, never a written one, and doubles none.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


class InputError(Exception):
    """Bad input: a message for the user, ending the run with a non-zero exit."""


def read_records(path: str | os.PathLike) -> list[dict]:
    """Records of a .json array or a .jsonl file; errors name the file, line and problem."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.suffix not in (".json", ".jsonl"):
        raise InputError(f"{path}: expected a .json or .jsonl file")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise InputError(f"{path}: file is empty")
    if path.suffix == ".jsonl":
        return list(_jsonl_records(path, text.splitlines()))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON array of records")
    for i, record in enumerate(data):
        if not isinstance(record, dict):
            raise InputError(f"{path}: record {i}: expected a JSON object")
    return data


def iter_records(path: str | os.PathLike) -> Iterator[dict]:
    """Records one at a time: a .jsonl file is streamed, a .json array read whole."""
    path = Path(path)
    if path.suffix != ".jsonl":
        yield from read_records(path)
        return
    if not path.exists():
        raise InputError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        yield from _jsonl_records(path, f)


def _jsonl_records(path: Path, lines: Iterable[str]) -> Iterator[dict]:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object")
        yield record


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


def write_records(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write atomically: a reader sees the old file or the whole new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; outputs are ordinary
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if path.suffix == ".jsonl":
                for record in records:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                json.dump(list(records), f, ensure_ascii=False, indent=2)
                f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class Journal:
    """Append-only record of finished work for one output file.

    The first line holds the run's settings (`fingerprint`); resuming with other settings
    is refused, since mixing them would silently corrupt the output. Each further line is
    one finished record under its key (`{"key": k, "record": {...}}`); `done` maps keys to
    records. A line cut short by a kill is dropped on resume.
    """

    def __init__(self, output: str | os.PathLike, fingerprint: dict):
        self.output = Path(output)
        self.path = Path(f"{output}.journal.jsonl")
        self.fingerprint = fingerprint
        self.done: dict = {}
        self._load()
        self._file = None

    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        good = raw[: raw.rfind(b"\n") + 1]  # drop a last line cut short by a kill
        lines = good.decode("utf-8").splitlines()
        if not lines:
            return
        header = json.loads(lines[0]).get("__journal__")
        if header != self.fingerprint:
            changed = sorted(
                k
                for k in set(header or {}) | set(self.fingerprint)
                if (header or {}).get(k) != self.fingerprint.get(k)
            )
            raise InputError(
                f"{self.path}: an unfinished run with other settings ({', '.join(changed)}) "
                "left this journal; rerun with the same arguments to resume it, or delete it "
                "to start over"
            )
        for line in lines[1:]:
            entry = json.loads(line)
            self.done[entry["key"]] = entry["record"]
        if len(good) != len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(len(good))

    def append(self, key, record: dict) -> None:
        if self._file is None:
            new = not self.path.exists() or self.path.stat().st_size == 0
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
            if new:
                self._file.write(json.dumps({"__journal__": self.fingerprint}) + "\n")
        self._file.write(json.dumps({"key": key, "record": record}, ensure_ascii=False) + "\n")
        self._file.flush()  # in the OS after each record: a killed process loses none
        self.done[key] = record

    def finish(self, records: Iterable[dict]) -> None:
        """Write the final output atomically, then drop the journal."""
        self.close()
        write_records(self.output, records)
        if self.path.exists():
            os.remove(self.path)

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
