"""HTTP to an OpenAI-compatible server, for the `openai` engine and the server tokenizer.

Plain HTTP with the standard library (`http.client`): one keep-alive connection per worker
thread, `max_concurrency` workers, retries with exponential backoff on connection errors,
timeouts, 429 and 5xx, then a `ServerError` (an `InputError`: the CLI prints one line and
exits 2). Workers are daemon threads, so a dead server never keeps the process alive.

The API key is read from the environment variable named by `api_key_env` and sent as
`Authorization: Bearer ...`; it is never logged, printed, put in an exception or repr,
or written to records (server messages are scrubbed of it too).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from magpie.records import InputError

log = logging.getLogger("magpie")
J = TypeVar("J")
R = TypeVar("R")


class ServerError(InputError):
    """The server is unreachable, failing, or refused a request; the run stops here."""


def _describe(error: BaseException, timeout: float) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(error, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "the server closed the connection"
    return f"{type(error).__name__}: {error}"


def error_message(payload: Any) -> str:
    """The server's error text, from the shapes vLLM, llama.cpp and FastAPI use."""
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            payload = error.get("message") or error
        elif error:
            payload = error
        else:
            payload = payload.get("detail") or payload.get("message") or payload
    text = payload if isinstance(payload, str) else json.dumps(payload)
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")


class ServerClient:
    """HTTP to one server: keep-alive connection per thread, retries, no secrets leaked.

    `base_url` is the OpenAI base (`http://host:port/v1`); a URL without `/v1` is taken as
    the server root. Root endpoints (`/props`, `/tokenizer_info`, `/tokenize`) are under the
    root, OpenAI ones under `<root>/v1`.
    """

    def __init__(
        self,
        base_url: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 600.0,
        max_retries: int = 4,
        backoff: float = 0.5,
    ):
        parts = urlsplit(base_url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(
                f"--base_url must look like http://127.0.0.1:8000/v1, not {base_url!r}"
            )
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        path = parts.path.rstrip("/")
        self.root = path[:-3] if path.endswith("/v1") else path
        self.api = self.root + "/v1"
        host = f"[{self.host}]" if ":" in self.host else self.host
        # What messages show: no user info, query or key.
        self.url = f"{parts.scheme}://{host}:{self.port}{self.api}"
        self.timeout, self.max_retries, self.backoff = timeout, max_retries, backoff
        self.api_key_env = api_key_env or ""
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        self._secret = key
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"ServerClient({self.url})"

    def scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _once(self, method: str, path: str, data: bytes | None) -> tuple[int, Any, float]:
        conn = self._connection()
        conn.request(method, path, body=data, headers=self._headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        try:
            retry_after = float(resp.getheader("Retry-After") or 0)
        except ValueError:
            retry_after = 0.0
        return resp.status, payload, retry_after

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        *,
        retry: bool = True,
        abort: threading.Event | None = None,
    ) -> tuple[int, Any]:
        """(status, JSON body) of a 2xx-4xx answer (not 429).

        Connection errors, timeouts, 429 and 5xx are retried with exponential backoff
        (honouring Retry-After), then raise `ServerError`.
        """
        data = json.dumps(body).encode("utf-8") if body is not None else None
        start = time.monotonic()
        attempts = (self.max_retries + 1) if retry else 1
        for attempt in range(attempts):
            retry_after = 0.0
            try:
                status, payload, retry_after = self._once(method, path, data)
            except (OSError, http.client.HTTPException) as e:
                self.close()
                problem = _describe(e, self.timeout)
            else:
                if status < 500 and status != 429:
                    return status, payload
                problem = f"HTTP {status}: {error_message(payload)}"
            if attempt + 1 == attempts or (abort is not None and abort.is_set()):
                break
            delay = min(self.backoff * 2**attempt, 30.0)
            delay = min(max(delay, retry_after), 60.0)
            log.warning(
                "server %s: %s; retry %d/%d in %.1f s",
                self.url,
                self.scrub(problem),
                attempt + 1,
                self.max_retries,
                delay,
            )
            if abort is not None:
                if abort.wait(delay):
                    break
            else:
                time.sleep(delay)
        seconds = time.monotonic() - start
        raise ServerError(
            self.scrub(
                f"the server at {self.url} is not answering {method} {path}: {problem} "
                f"(tried {attempt + 1} times over {seconds:.1f} s). Records finished so far "
                "are kept in the journal: rerun the same command when the server is back "
                "and it continues where it stopped"
            )
        )

    def concurrently(
        self,
        jobs: Sequence[J],
        send: Callable[[J, threading.Event], R],
        workers: int,
    ) -> Generator[tuple[J, R], None, None]:
        """(job, send(job, abort)) for every job, in the order they finish, from `workers`
        threads (each with its own connection, closed when it ends).

        The first error stops the workers taking new jobs and is raised here; so does
        closing the generator. `abort` is set then: `send` passes it to `request` so a
        retry backoff ends early. Daemon threads: a hung or dead server never keeps the
        process from exiting.
        """
        work: queue.SimpleQueue = queue.SimpleQueue()
        for job in jobs:
            work.put(job)
        results: queue.SimpleQueue = queue.SimpleQueue()
        abort = threading.Event()

        def worker() -> None:
            try:
                while not abort.is_set():
                    try:
                        job = work.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        results.put((job, send(job, abort), None))
                    except BaseException as e:  # noqa: BLE001 - handed to the caller
                        abort.set()  # the run stops: other workers take no new work
                        results.put((job, None, e))
            finally:
                self.close()

        for _ in range(min(workers, len(jobs))):
            threading.Thread(target=worker, daemon=True, name="magpie-openai").start()
        try:
            for _ in range(len(jobs)):
                job, answer, error = results.get()
                if error is not None:
                    raise error
                yield job, answer
        finally:
            abort.set()

    def get_json(self, path: str) -> Any | None:
        """JSON of a GET that may not exist on this server (None on 4xx)."""
        status, payload = self.request("GET", path)
        return payload if status < 400 else None

    def refused(self, path: str, status: int, payload: Any) -> ServerError:
        """The error for a 4xx answer: the request itself is wrong, retrying cannot help."""
        if status in (401, 403):
            where = f"${self.api_key_env}" if self.api_key_env else "the API key variable"
            return ServerError(
                f"the server at {self.url} refused {path} (HTTP {status}): check the API key "
                f"in {where} (--api_key_env names the variable)"
            )
        return ServerError(
            self.scrub(
                f"the server at {self.url} rejected {path} (HTTP {status}): {error_message(payload)}"
            )
        )
