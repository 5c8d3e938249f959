"""Records on disk: read .json/.jsonl with clear errors, write atomically, journal and resume.

Every long stage writes each finished record to an append-only journal
(`<output>.journal.jsonl`) as soon as it is made. Re-running the same command reads the
journal back and skips what is done; the final file is written atomically (temporary file
+ rename) and the journal removed. Total I/O stays O(N) and a run killed at any moment
loses at most the records in flight, never a written one, and doubles none.

Beside a finished output, `<output>.meta.json` keeps the settings that made it and the
SHA-256 of its input (written atomically after the output). A rerun with the same
settings and input finds it complete; with other settings, another input, or an output
of unknown origin it stops with one line unless asked to `overwrite`. One run at a time
writes an output: the journal holds a lock (`<output>.lock`), and a second run names the
holder (pid, host, start time) and stops.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

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

    def write(f) -> None:
        if Path(path).suffix == ".jsonl":
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            json.dump(list(records), f, ensure_ascii=False, indent=2)
            f.write("\n")

    _write_atomically(path, write)


def write_json(path: str | os.PathLike, value) -> None:
    """Write one JSON value atomically (temporary file + rename)."""
    write_text(path, json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically: a reader sees the old file or the whole new one."""
    _write_atomically(path, lambda f: f.write(text))


def _write_atomically(path: str | os.PathLike, write) -> None:
    """`write(f)` into a temporary file beside `path`, synced, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; outputs are ordinary
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
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


def meta_path(output: str | os.PathLike) -> Path:
    """Where the settings and input fingerprint of `output` are kept."""
    return Path(f"{output}.meta.json")


def output_meta(fingerprint: dict) -> dict:
    """What `<output>.meta.json` holds for a run: its settings and, when the settings
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
    if not output.exists() or Path(f"{output}.journal.jsonl").exists():
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
    if stored is None:
        raise InputError(
            f"{output}: exists, with no {meta_path(output).name} to say what made it; pass "
            "--overwrite to replace it"
        )
    raise InputError(
        f"{output}: already made with other {', '.join(_differences(stored, wanted))}; pass "
        "--overwrite to replace it, or choose another output"
    )


_HELD: dict[str, object] = {}  # output lock path -> this process's lock on it


def lock_output(output: str | os.PathLike):
    """Take `<output>.lock` for this process, or raise InputError naming its holder."""
    from filelock import FileLock, Timeout

    path = Path(f"{output}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    stale = _HELD.pop(key, None)  # an earlier journal of this process that never finished
    if stale is not None:
        stale.release(force=True)
    lock = FileLock(str(path), timeout=0)
    owner = Path(f"{path}.owner")
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
    key = str(Path(f"{output}.lock").resolve())
    if _HELD.get(key) is lock:
        del _HELD[key]
    lock.release(force=True)


class Journal:
    """Append-only record of finished work for one output file.

    The first line holds the run's settings (`fingerprint`) and its input's SHA-256;
    resuming with other settings or a changed input is refused, since mixing them would
    silently corrupt the output. Each further line is one finished record under its key
    (`{"key": k, "record": {...}}`); `done` maps keys to records. A line cut short by a
    kill is dropped on resume.

    A finished output with the same settings and input sets `complete` (the stage has
    nothing to do); one made otherwise is refused unless `overwrite`. The journal locks
    the output for this run until `finish` or `release`.
    """

    def __init__(self, output: str | os.PathLike, fingerprint: dict, overwrite: bool | None = None):
        self.output = Path(output)
        self.path = Path(f"{output}.journal.jsonl")
        self.fingerprint = fingerprint
        self.done: dict = {}
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
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        good = raw[: raw.rfind(b"\n") + 1]  # drop a last line cut short by a kill
        lines = good.decode("utf-8").splitlines()
        if not lines:
            return
        first = json.loads(lines[0])
        header = first.get("__journal__")
        changed = sorted(
            k
            for k in set(header or {}) | set(self.fingerprint)
            if (header or {}).get(k) != self.fingerprint.get(k)
        )
        if "__input_sha256__" in first and first["__input_sha256__"] != self.meta["input_sha256"]:
            changed.append("input file contents")
        if changed and overwrite:
            os.remove(self.path)  # an unfinished run with other settings: start over
            return
        if changed:
            raise InputError(
                f"{self.path}: an unfinished run with other settings ({', '.join(changed)}) "
                "left this journal; rerun with the same arguments to resume it, or pass "
                "--overwrite (or delete it) to start over"
            )
        for line in lines[1:]:
            entry = json.loads(line)
            self.done[entry["key"]] = entry["record"]
        if len(good) != len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(len(good))

    def append(self, key, record: dict) -> None:
        self.append_many([(key, record)], sync=False)

    def append_many(self, entries: Iterable[tuple], sync: bool = True) -> None:
        """Journal (key, record) pairs in one write; with `sync` they are on disk before
        this returns (a chunk committed by the Ray executor survives a crash of the node)."""
        if self._file is None:
            new = not self.path.exists() or self.path.stat().st_size == 0
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
            if new:
                header = {
                    "__journal__": self.fingerprint,
                    "__input_sha256__": self.meta["input_sha256"],
                }
                self._file.write(json.dumps(header) + "\n")
        entries = list(entries)
        self._file.write(
            "".join(
                json.dumps({"key": key, "record": record}, ensure_ascii=False) + "\n"
                for key, record in entries
            )
        )
        self._file.flush()  # in the OS after each write: a killed process loses none
        if sync:
            os.fsync(self._file.fileno())
        self.done.update(entries)

    def finish(self, records: Iterable[dict]) -> None:
        """Write the final output atomically, then its meta file, then drop the journal
        and the lock."""
        self.close()
        write_records(self.output, records)
        write_json(meta_path(self.output), self.meta)
        if self.path.exists():
            os.remove(self.path)
        self.release()

    def close(self) -> None:
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
