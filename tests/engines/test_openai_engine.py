"""The `openai` engine against a REAL llama.cpp server (llama-cpp-python's, on the embedded
model's GGUF) and small stdlib fakes for what llama.cpp cannot show: a chat-only server,
and a vLLM-like server (prompt lists, `n`, `stop_reason`, 503 retries)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO
from openai_servers import (
    KEY_ENV,
    PY,
    SECRET,
    free_port,
    start_server,
    stop_server,
)

from magpie.engines import load_engine
from magpie.engines.base import SamplingParams
from magpie.engines.http_client import ServerClient, ServerError
from magpie.engines.openai import OpenAIEngine
from magpie.engines.server_tokenizer import server_tokenizer
from magpie.models import DEFAULT_MODEL
from magpie.profiles import get_profile
from magpie.records import InputError, read_records, state_path
from magpie.responses import ResponseJob

INS_FILE = "Magpie_SmolLM2-135M-Instruct_{total}_{ts}_ins.json"


def load_exp(name: str):
    spec = importlib.util.spec_from_file_location(f"exp_{name}", REPO / "exp" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_ins = load_exp("gen_ins")
gen_res = load_exp("gen_res")


@pytest.fixture()
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def server_opts(url: str) -> dict:
    return {"engine": "openai", "base_url": url, "api_key_env": KEY_ENV, "max_concurrency": 2}


def no_secret(*paths: Path, text: str = "") -> None:
    assert SECRET not in text
    for p in paths:
        assert SECRET not in p.read_text(), p


def test_instructions_and_responses_through_llama_cpp(server, key, tmp_path, tiny_model_dir):
    gen_ins.main(
        total_prompts=8,
        n=8,
        max_tokens=40,  # most SmolLM2 instructions end within 40 tokens
        seed=3,
        timestamp=2,
        output_folder=str(tmp_path),
        **server_opts(server),
    )
    ins_path = tmp_path / INS_FILE.format(total=8, ts=2)
    records = read_records(ins_path)
    assert [r["id"] for r in records] == list(range(8))
    reasons = {r["instruction_finish_reason"] for r in records}
    assert reasons <= {"newline", "end_of_turn", "length"} and reasons != {"length"}
    for r in records:
        assert r["pre_query_template"].startswith("<|im_start|>system\nYou are a helpful")
        assert r["gen_input_configs"]["seed"] == 3
        assert r["gen_input_configs"]["input_generator"] == DEFAULT_MODEL
        assert (r["instruction_flag"] is None) == (
            bool(r["instruction"]) and r["instruction_finish_reason"] != "length"
        )
    assert len({r["instruction"] for r in records}) > 4  # one seed per sample, not one text

    gen_res.main(input_file=str(ins_path), max_tokens=24, **server_opts(server))
    res_path = tmp_path / INS_FILE.format(total=8, ts=2).replace(".json", "_res.json")
    answered = read_records(res_path)
    assert len(answered) == 8
    for r in answered:
        if r["instruction_flag"]:
            assert r["response"] is None and r["response_flag"] == "skipped"
            continue
        cfg = r["gen_response_configs"]
        assert cfg["engine"] == "openai" and cfg["response_mode"] == "template"
        assert cfg["prompt"].endswith(f"{r['instruction']}<|im_end|>\n<|im_start|>assistant\n")
        assert r["response_finish_reason"] in ("stop", "length")
    assert any(r["response"] for r in answered)

    # The same fields as the hf engine writes (tiny random model, same stages).
    hf_dir = tmp_path / "hf"
    gen_ins.main(
        model_path=str(tiny_model_dir),
        total_prompts=2,
        n=2,
        max_tokens=3,
        timestamp=2,
        output_folder=str(hf_dir),
        engine="hf",
    )
    hf_ins = read_records(next(hf_dir.glob("*_ins.json")))
    assert set(hf_ins[0]) == set(records[0])
    src = hf_dir / "one_ins.json"
    src.write_text(json.dumps([answered_input(records)]))
    # With the embedded defaults' frequency penalty, as the server run above got them
    # (recorded only when set).
    gen_res.main(
        input_file=str(src),
        model_path=str(tiny_model_dir),
        max_tokens=3,
        frequency_penalty=0.3,
        engine="hf",
    )
    hf_res = read_records(hf_dir / "one_ins_res.json")[0]
    ours = next(r for r in answered if r["response"] is not None)
    assert set(hf_res) == set(ours)
    assert set(hf_res["gen_response_configs"]) == set(ours["gen_response_configs"])
    no_secret(ins_path, res_path)


def answered_input(records: list[dict]) -> dict:
    r = next(r for r in records if not r["instruction_flag"])
    return {**r, "instruction": "Say hi"}


def test_chat_endpoint_mode_matches_local_template(server, key, tmp_path):
    src = tmp_path / "two_ins.json"
    src.write_text(
        json.dumps(
            [
                {"id": 0, "instruction": "Name three colours.", "instruction_flag": None},
                {"id": 1, "instruction": "What is 2+2?", "instruction_flag": None},
            ]
        )
    )
    tokenizer = server_tokenizer("", base_url=server, api_key_env=KEY_ENV)
    profile = get_profile(DEFAULT_MODEL, tokenizer)
    out = {}
    for mode in ("template", "chat"):
        engine = load_engine(  # as gen_res --response_mode MODE builds it
            "openai",
            "",
            base_url=server,
            api_key_env=KEY_ENV,
            tokenizer=tokenizer,
            response_mode=mode,
        )
        path = tmp_path / f"{mode}.json"
        ResponseJob(profile, src, path, model_name=DEFAULT_MODEL, max_tokens=24).run(engine)
        out[mode] = read_records(path)
    assert [r["id"] for r in out["chat"]] == [0, 1]  # both answered: the checks below run
    for t, c in zip(out["template"], out["chat"], strict=True):
        assert c["gen_response_configs"]["response_mode"] == "chat"
        assert c["gen_response_configs"]["prompt"] is None
        # Greedy: the server's own rendering of the template gives the same answer.
        assert c["response"] == t["response"] and c["response"]


def test_chat_response_mode_needs_a_server():
    with pytest.raises(InputError, match="--response_mode chat needs --engine openai"):
        load_engine("hf", "", response_mode="chat")
    with pytest.raises(InputError, match="--response_mode must be template or chat"):
        load_engine("hf", "", response_mode="chats")


def test_wrong_api_key_is_refused_without_showing_it(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-not-to-be-shown")
    with pytest.raises(ServerError) as e:
        OpenAIEngine("", base_url=server, api_key_env=KEY_ENV)
    assert "HTTP 401" in str(e.value) and KEY_ENV in str(e.value)
    assert "sk-wrong" not in str(e.value) and SECRET not in str(e.value)


def journal_records(path: Path) -> dict:
    lines = path.read_text().splitlines()[1:]
    return {e["key"]: e["record"] for e in map(json.loads, lines)}


def test_server_killed_mid_run_fails_cleanly_then_resumes(key, tmp_path, capsys):
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    out = tmp_path / "out"
    final = out / INS_FILE.format(total=8, ts=7)
    journal = state_path(final, ".journal.jsonl")
    opts = {"total_prompts": 8, "n": 4, "max_tokens": 16, "seed": 7, "timestamp": 7}
    opts |= {"output_folder": str(out), **server_opts(url)}
    args = [PY, str(REPO / "exp" / "gen_ins.py")]
    args += [x for k, v in opts.items() for x in (f"--{k}", str(v))]

    proc = start_server(port, tmp_path / "killed.log")
    try:
        run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None:
            if journal.exists() and journal.read_bytes().count(b"\n") >= 3:  # header + 2
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the server dies mid-run
        proc.wait()
        stdout, stderr = run.communicate(timeout=60)
    finally:
        stop_server(proc)
    assert run.returncode == 2, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: the server at "), stderr
    assert "is not answering" in stderr and "rerun the same command" in stderr
    assert "Traceback" not in stderr
    no_secret(journal, text=stdout + stderr)
    kept = journal_records(journal)
    assert 2 <= len(kept) < 8 and not final.exists()

    proc = start_server(port, tmp_path / "restarted.log")  # back on the same address
    try:
        gen_ins.main(**opts)  # the same command again
    finally:
        stop_server(proc)
    assert f"{len(kept)} resumed from journal" in capsys.readouterr().out
    records = read_records(final)
    assert [r["id"] for r in records] == list(range(8))  # exactly the requested, no doubles
    for i, record in kept.items():
        assert records[i] == record  # nothing lost or redone
    assert not journal.exists()
    no_secret(final)


def posted(srv, path: str = "/v1/completions") -> list[dict]:
    return [
        b for (m, p, _, b) in srv.seen if m == "POST" and p == path and b.get("max_tokens") != 1
    ]


def test_chat_only_server_is_refused_with_the_reason(fake, tmp_path):
    srv = fake(owned_by="someone", chat_only=True)
    with pytest.raises(InputError, match="does not offer raw text completion") as e:
        gen_ins.main(
            total_prompts=4, output_folder=str(tmp_path), engine="openai", base_url=srv.url
        )
    assert "chat endpoint applies the whole template" in str(e.value)
    assert "HTTP 404" in str(e.value)
    assert [p.name for p in tmp_path.iterdir()] in ([], [".magpie"])  # no output
    # No journal or meta file (the run lock's files stay, by design).
    left = [p.name for p in tmp_path.glob(".magpie/*")]
    assert not [n for n in left if not n.endswith((".lock", ".lock.owner"))], left


def test_vllm_like_server_n_seeds_batching_retries_and_key(fake, smol_tokenizer, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    srv = fake("vllm")
    engine = OpenAIEngine(
        "fake/model",
        base_url=srv.url,
        api_key_env=KEY_ENV,
        tokenizer=smol_tokenizer,
        batch_size=3,
        backoff=0.01,
    )
    assert engine.kind == "vllm" and engine.n_per_request and engine.model == "fake/model"
    assert SECRET not in repr(engine) + repr(engine.client)
    params = SamplingParams(
        n=2, max_tokens=5, stop=["\n"], stop_token_ids=[2], seed=10, repetition_penalty=1.2
    )
    out = engine.generate(["a", "bb", "ccc"], params)
    # Prompt i gets seed + i*n (children seed + j), as on the vllm engine; choices re-sorted.
    assert [[c.text for c in cs] for cs in out] == [
        ["a|10", "a|11"],
        ["bb|12", "bb|13"],
        ["ccc|14", "ccc|15"],
    ]
    # vLLM's stop_reason None means EOS: recorded as the EOS id, like the vllm engine.
    assert [c.stop_reason for c in out[0]] == [smol_tokenizer.eos_token_id, "\n"]
    bodies = posted(srv)
    assert sorted(b["seed"] for b in bodies) == [10, 12, 14]
    for b in bodies:
        assert b["n"] == 2 and b["repetition_penalty"] == 1.2 and b["top_k"] == -1
        assert b["add_special_tokens"] is False and b["stop_token_ids"] == [2]
    assert all(h.get("Authorization") == f"Bearer {SECRET}" for (_, _, h, _) in srv.seen)

    # Without a seed, prompts are batched (lists) and mapped back by choice index.
    srv.seen.clear()
    out = engine.generate(["a", "bb", "ccc", "dddd"], SamplingParams(max_tokens=5))
    assert [cs[0].text for cs in out] == ["a|None", "bb|None", "ccc|None", "dddd|None"]
    assert sorted(
        len(b["prompt"]) if isinstance(b["prompt"], list) else 1 for b in posted(srv)
    ) == [1, 3]

    # 503s are retried with backoff; the answer then arrives.
    srv.fail_next = 2
    assert engine.generate(["x"], SamplingParams(max_tokens=5, seed=1))[0][0].text == "x|1"
    srv.fail_next = 99
    with pytest.raises(ServerError, match="HTTP 503: overloaded"):
        engine.generate(["x"], SamplingParams(max_tokens=5, seed=1))
    with pytest.raises(InputError, match="first token"):
        engine.generate(["x"], SamplingParams(logits_processor="de_markdown"))

    # vLLM's server takes at most 4 stop strings: the special tokens among them that are
    # also stop ids stop by id (it strips them from the text anyway), the rest go as text.
    srv.seen.clear()
    srv.fail_next = 0
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    ids = smol_tokenizer.convert_tokens_to_ids(specials)
    params = SamplingParams(max_tokens=5, stop=[*specials, "assistant", "\n"], stop_token_ids=ids)
    engine.generate(["x"], params, seeds=[3])
    (body,) = posted(srv)
    assert body["stop"] == ["assistant", "\n"] and body["stop_token_ids"] == ids
    with pytest.raises(InputError, match="at most 4 stop strings"):
        engine.generate(["x"], SamplingParams(max_tokens=5, stop=list("abcde")), seeds=[3])


def test_tokenizer_from_llama_server_props(fake):
    template = (FIXTURES / "chat_templates" / "smollm2.jinja").read_text()
    srv = fake("llamacpp", props={"chat_template": template, "eos_token": "<|im_end|>"})
    tokenizer = server_tokenizer("not-on-this-machine/model", base_url=srv.url)
    assert tokenizer.eos_token_id == 2
    profile = get_profile("not-on-this-machine/model", tokenizer)
    assert profile.pre_query_template == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\n"
    )
    assert "<|im_end|>" in profile.stop_tokens and 2 in profile.stop_token_ids
    bare = fake("me")  # llama-cpp-python's server reports no template
    with pytest.raises(InputError, match="does not report the chat template"):
        server_tokenizer("not-on-this-machine/model", base_url=bare.url)


def test_enable_thinking_is_refused_in_chat_mode(fake, smol_tokenizer, tmp_path):
    """The server renders the template in chat mode: a template switch set here would be
    silently ignored, so it is refused before any request."""
    srv = fake("vllm")
    engine = OpenAIEngine(
        "fake/model", base_url=srv.url, tokenizer=smol_tokenizer, response_mode="chat"
    )
    src = tmp_path / "x.json"
    src.write_text(json.dumps([{"id": 0, "instruction": "Hi"}]))
    profile = get_profile(DEFAULT_MODEL, smol_tokenizer)
    job = ResponseJob(profile, src, tmp_path / "o.json", model_name="m", enable_thinking=False)
    with pytest.raises(InputError, match="--enable_thinking sets the chat template"):
        job.run(engine)
    assert not (tmp_path / "o.json").exists()


def test_concurrent_requests_stop_at_the_first_error():
    """ServerClient.concurrently: answers as they finish, the first error raised, and no
    new request taken after it, nor after the caller stops reading."""
    client = ServerClient("http://127.0.0.1:9/v1")
    taken: list[int] = []

    def send(job: int, abort: threading.Event) -> int:
        taken.append(job)
        if job == 2:
            raise ServerError("job 2 failed")
        return job * 10

    with pytest.raises(ServerError, match="job 2 failed"):
        for job, answer in client.concurrently(range(6), send, workers=1):
            assert answer == job * 10
    assert taken == [0, 1, 2]

    release, taken, finished = threading.Event(), [], []

    def slow(job: int, abort: threading.Event) -> int:
        taken.append(job)
        if job:  # job 0 answers at once, the others when released
            release.wait(10)
        finished.append(job)
        return job

    answers = client.concurrently(range(6), slow, workers=2)
    assert next(answers) == (0, 0)
    answers.close()  # the caller stops: in-flight requests end, no new one starts
    release.set()
    deadline = time.monotonic() + 10
    while len(finished) < len(taken) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert sorted(finished) == sorted(taken) and set(taken) <= {0, 1, 2}
