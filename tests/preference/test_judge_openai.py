"""The judge reward through an OpenAI-compatible server: a REAL llama.cpp server
(llama-cpp-python's, on the embedded model's GGUF), whose completions return the first
token's top logprobs, and small fakes for a vLLM server (exact `logprob_token_ids`) and
for a server that returns no logprobs (one clear error). vLLM's own server is asked for the
rating tokens in tests/vllm_cpu/test_vllm_server.py
(`test_judge_next_token_probs_through_the_real_server`)."""

from __future__ import annotations

import json
import math
import urllib.request

import pytest
from judge_cases import VARIED, judge_text, records_of
from openai_servers import KEY_ENV, SECRET, FakeHandler

from magpie.engines.openai import OpenAIEngine
from magpie.judge import JudgeScorer
from magpie.models import DEFAULT_MODEL
from magpie.records import InputError, read_records
from magpie.stages.gen_po_rewards import GenPoRewards


def server_top_logprobs(url: str, prompt: str) -> dict[str, float]:
    """The first token's top logprobs, asked of the server directly."""
    body = {"prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": 20}
    request = urllib.request.Request(
        url + "/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as r:
        return json.loads(r.read())["choices"][0]["logprobs"]["top_logprobs"][0]


def test_judge_through_llama_cpp_server(
    server,  # noqa: F811
    smol_tokenizer,
    tmp_path,
    monkeypatch,
):
    """gen_po_rewards --reward_model judge --engine openai on llama.cpp: each score is the
    expected rating of the "1".."5" entries of the server's own top logprobs for the
    judge's prompt (asked here by plain HTTP, prompt built here)."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    src = tmp_path / "v_5res.json"
    src.write_text(json.dumps(records_of(VARIED[:2])))
    GenPoRewards(
        input_file=str(src),
        reward_model="judge",
        engine="openai",
        base_url=server,
        api_key_env=KEY_ENV,
        max_concurrency=1,
    ).run()
    out = read_records(tmp_path / "v_5res_armorm.json")
    scores = []
    for record in out:
        assert record["rewards_model"] == f"judge:{DEFAULT_MODEL}"
        for response, got in zip(record["responses"], record["rewards"], strict=True):
            assert 1 <= got["score"] <= 5
            top = server_top_logprobs(
                server, judge_text(smol_tokenizer, record["instruction"], response)
            )
            p = [math.exp(top[str(k)]) for k in range(1, 6)]  # all five among the top 20
            assert sum(p) > 0.5
            want = sum(k * pk for k, pk in zip(range(1, 6), p, strict=True)) / sum(p)
            assert got["score"] == pytest.approx(want, abs=1e-6)
            scores.append(got["score"])
    assert len(set(scores)) == len(scores)


def test_a_server_without_logprobs_is_refused_with_one_error(fake, smol_tokenizer):  # noqa: F811
    srv = fake("someone")  # answers completions, never with logprobs
    engine = OpenAIEngine("fake/model", base_url=srv.url, tokenizer=smol_tokenizer)
    judge = JudgeScorer(engine, "fake/model")
    text = judge.prompt("Say hi.", "Hi!")
    with pytest.raises(InputError, match="returned no logprobs") as e:
        engine.next_token_probs([text, text], judge.rating_ids)
    assert "use --engine hf or vllm" in str(e.value)


class VLLMLogprobs(FakeHandler):
    """A vLLM server's answer to `logprob_token_ids` with `return_tokens_as_token_ids`:
    the asked ids' logprobs keyed "token_id:N" (here log(N / 1000))."""

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        self.server.seen.append(("POST", self.path, dict(self.headers), body))
        if "logprob_token_ids" not in body:
            return self.reply(
                200, {"choices": [{"index": 0, "text": "x", "finish_reason": "length"}]}
            )
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        top = {f"token_id:{t}": math.log(t / 1000) for t in body["logprob_token_ids"]}
        choices = [
            {"index": i, "text": "", "finish_reason": "length", "logprobs": {"top_logprobs": [top]}}
            for i in range(len(prompts))
        ]
        self.reply(200, {"choices": choices[::-1]})


def test_vllm_server_is_asked_for_exactly_the_rating_tokens(fake, smol_tokenizer):  # noqa: F811
    srv = fake("vllm")
    srv.RequestHandlerClass = VLLMLogprobs
    engine = OpenAIEngine("fake/model", base_url=srv.url, tokenizer=smol_tokenizer, batch_size=2)
    probs = engine.next_token_probs(["a", "b", "c"], [33, 37, 100])
    assert probs == [pytest.approx([0.033, 0.037, 0.1])] * 3
    bodies = [b for (m, p, _, b) in srv.seen if m == "POST" and "logprob_token_ids" in b]
    assert sorted(len(b["prompt"]) if isinstance(b["prompt"], list) else 1 for b in bodies) == [
        1,
        2,
    ]
    for b in bodies:
        assert b["logprob_token_ids"] == [33, 37, 100] and b["logprobs"] == 20
        assert b["return_tokens_as_token_ids"] is True and b["max_tokens"] == 1
        assert b["temperature"] == 0.0 and b["add_special_tokens"] is False
