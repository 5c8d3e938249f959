"""The `openai` engine: any OpenAI-compatible server (`vllm serve`, llama.cpp, SGLang).

Pre-query extraction needs RAW text completion: the model must see only the left part of
its chat template and write the user's turn itself. So instructions go to
`POST /v1/completions` with the pre-query template as the prompt. A chat endpoint applies
the whole template and always asks for the assistant's reply, so a chat-only server is
refused with a message saying so. Responses use raw completion with the locally rendered
template (default, identical to the local engines) or the server's chat endpoint
(`response_mode="chat"`; `magpie.responses` records which).

Each prompt is yielded as soon as its samples are in, so the stage journal keeps everything
finished before a failure and a rerun continues from there. The HTTP itself (worker
threads, keep-alive connections, retries, the API key) is `magpie.engines.http_client`;
the tokenizer of a model whose files are not on this machine,
`magpie.engines.server_tokenizer`.

Server facts relied on (the server kind comes from `owned_by` in `GET /v1/models`):
- vLLM (`owned_by: "vllm"`): `prompt` may be a list (choices come back prompt-major,
  `index = prompt * n + sample`); `n` samples per request, child j seeded `seed + j`;
  extra sampling fields `repetition_penalty`, `top_k` (-1 = off), `min_p`,
  `stop_token_ids`, `add_special_tokens` (False: the template already holds any BOS),
  `structured_outputs`, `return_token_ids` (per-choice `token_ids`); `stop_reason` per
  choice (None when EOS ended it); unknown fields are ignored with a warning
  (vllm/entrypoints/openai/protocol.py). `GET /tokenizer_info` (with `--enable-tokenizer-info-endpoint`) reports the
  tokenizer config and chat template. The server applies the model's
  generation_config.json defaults, so every sampling field is sent explicitly.
- llama-cpp-python's server (0.3.x, `owned_by: "me"`; read from its source): a prompt list
  must have at most one element (more trips an assert: HTTP 500), `n` is ignored (one
  choice), sampling defaults are top_k 40, min_p 0.05, repeat_penalty 1.1 (we send 0, 0,
  and the asked penalty), `top_k` must be >= 0, validation errors come back as HTTP 500,
  no `stop_reason`, usage counts stop-string tokens but not the EOS token,
  `POST /extras/tokenize` adds BOS when the model does. One model call at a time.
- llama.cpp's llama-server (`owned_by: "llamacpp"`): `GET /props` gives the chat template;
  `POST /tokenize {content, add_special}`; `json_schema`; `repeat_penalty`, `top_k`
  (<= 0 = off), `min_p`; BOS added to text prompts when the model's metadata says so.
  Its OpenAI completion response has no stop reason.

Batching: several prompts per request only on vLLM/SGLang and only without seeds (one
request carries one seed, and identical Magpie prompts with one seed give identical text).
With seeds, prompt i's request carries `seeds[i]` as on the `vllm` engine (child j seeded
`seeds[i] + j` by the server); on servers that ignore `n`, its sample j is its own request
with seed `seeds[i] + j` (`Engine.stream`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from magpie.engines import repetition
from magpie.engines.base import Completion, Prompt, SamplingParams, collect, resolve_seeds
from magpie.engines.http_client import ServerClient, ServerError, error_message
from magpie.engines.server_tokenizer import server_tokenizer
from magpie.models import canonical_name
from magpie.prompt_text import can_encode, encode
from magpie.records import InputError

log = logging.getLogger("magpie")

VLLM_LIKE = ("vllm", "sglang")
LLAMA_CPP = ("llama.cpp", "llama-cpp-python")
BATCHING = ("vllm", "sglang")
OWNED_BY = {"vllm": "vllm", "sglang": "sglang", "llamacpp": "llama.cpp", "me": "llama-cpp-python"}
# OpenAI's limit on stop strings per request, which vLLM's server enforces.
MAX_STOP_STRINGS = 4

FINISH = {"stop": "stop", "eos": "stop", "eos_token": "stop", "stop_sequence": "stop"}
FINISH.update(length="length", max_tokens="length", repetition="repetitive")


@dataclass
class _Request:
    """One HTTP request: `prompts` (indices) each get `n` samples, filling their sample
    slots from `first`."""

    prompts: list[int]
    first: int
    n: int
    seed: int | None


CHAT_ONLY = (
    "the server at {url} does not offer raw text completion (POST /v1/completions answered "
    "HTTP {status}{detail}). Magpie cannot work through a chat endpoint: it sends the model "
    "only the left part of its chat template (the pre-query template) and lets it write "
    "the user's message, while a chat endpoint applies the whole template itself and always "
    "asks for the assistant's reply. Serve the model with /v1/completions (vllm serve, "
    "llama.cpp's server, SGLang) or use --engine hf or vllm"
)
_UNSUPPORTED = re.compile(r"unsupported|not (be )?supported|does not support|not available", re.I)


class OpenAIEngine:
    """Generation through an OpenAI-compatible server. See the module docstring."""

    name = "openai"

    def __init__(
        self,
        model_path: str,
        *,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        request_timeout: float = 600.0,
        seed: int | None = None,
        tokenizer=None,
        trust_remote_code: bool = False,
        response_mode: str | None = None,
        batch_size: int = 16,
        max_retries: int = 4,
        backoff: float = 0.5,
    ):
        if not base_url:
            raise InputError(
                "--engine openai needs --base_url, the server's OpenAI base URL "
                "(e.g. http://127.0.0.1:8000/v1)"
            )
        mode = response_mode or os.environ.get("MAGPIE_RESPONSE_MODE") or "template"
        if mode not in ("template", "chat"):
            raise InputError(f"response mode must be 'template' or 'chat', not {mode!r}")
        self.model_path = model_path
        self.response_mode = mode
        self.seed = seed
        self.max_concurrency = max(1, int(max_concurrency))
        self.batch_size = max(1, int(batch_size))
        self._warned: set[str] = set()
        self.client = ServerClient(base_url, api_key_env, request_timeout, max_retries, backoff)
        self.tokenizer = tokenizer or server_tokenizer(
            model_path, trust_remote_code, base_url=base_url, api_key_env=api_key_env
        )
        self._special = set(getattr(self.tokenizer, "all_special_tokens", []) or [])
        self.kind, self.model = self._discover(model_path)
        self.n_per_request = self._probe()
        self.strip_bos = self._server_adds_bos()
        log.info(
            "server %s: %s, model %s; n per request: %s; batching: %s; responses via %s",
            self.client.url,
            self.kind,
            self.model,
            "yes" if self.n_per_request else "no (one request per sample)",
            "yes (without --seed)" if self.kind in BATCHING else "no",
            "the chat endpoint" if mode == "chat" else "the local chat template",
        )

    def __repr__(self) -> str:
        return f"OpenAIEngine({self.client.url}, model={self.model!r}, kind={self.kind!r})"

    # -- discovery -----------------------------------------------------------------

    def _discover(self, model_path: str) -> tuple[str, str | None]:
        """(server kind, model name to send) from GET /v1/models."""

        status, payload = self.client.request("GET", self.client.api + "/models")
        if status in (401, 403):
            raise self.client.refused("/v1/models", status, payload)
        data = payload.get("data") if status < 400 and isinstance(payload, dict) else None
        if not data:
            return "openai-compatible", model_path or None
        kind = OWNED_BY.get(str(data[0].get("owned_by", "")).lower(), "openai-compatible")
        served = [str(m.get("id")) for m in data]
        for name in (model_path, canonical_name(model_path)):
            if name and name in served:
                return kind, name
        if len(served) == 1:
            if model_path:
                log.info("server serves %s; sending that as the model name", served[0])
            return kind, served[0]
        raise InputError(
            f"the server at {self.client.url} serves {', '.join(served)}; pass one of them "
            f"as --model_path (got {model_path!r})"
        )

    def _probe(self) -> bool:
        """Check /v1/completions exists (else the chat-only error); True if `n` is honoured."""
        path = self.client.api + "/completions"
        body: dict = {"prompt": "Hello", "max_tokens": 1, "temperature": 1.0}
        if self.model:
            body["model"] = self.model
        status, payload = self.client.request("POST", path, body)
        if status >= 400:
            message = error_message(payload)
            if status in (404, 405) and re.search(r"model.*(not exist|not found)", message, re.I):
                raise self.client.refused(path, status, payload)
            if status in (404, 405) or (status in (400, 422, 501) and _UNSUPPORTED.search(message)):
                detail = f": {self.client.scrub(message)}" if message else ""
                raise InputError(
                    CHAT_ONLY.format(url=self.client.url, status=status, detail=detail)
                )
            raise self.client.refused(path, status, payload)
        status, payload = self.client.request("POST", path, {**body, "n": 2})
        choices = payload.get("choices") if status < 400 and isinstance(payload, dict) else None
        return bool(choices) and len(choices) == 2

    def _server_adds_bos(self) -> bool:
        """Whether llama.cpp puts a BOS before text prompts (then ours is dropped, no 2nd BOS)."""
        bos = getattr(self.tokenizer, "bos_token", None)
        bos_id = getattr(self.tokenizer, "bos_token_id", None)
        if self.kind not in LLAMA_CPP or not bos or bos_id is None:
            return False
        if self.kind == "llama-cpp-python":
            path, body = "/extras/tokenize", {"input": "a"}
        else:
            path, body = "/tokenize", {"content": "a", "add_special": True}
        if self.model:
            body["model"] = self.model
        status, payload = self.client.request("POST", self.client.root + path, body)
        tokens = payload.get("tokens") if status < 400 and isinstance(payload, dict) else None
        if not tokens:
            return False
        first = tokens[0]["id"] if isinstance(tokens[0], dict) else tokens[0]
        return int(first) == int(bos_id)

    # -- requests ------------------------------------------------------------------

    def _check(self, params: SamplingParams) -> None:
        if params.logits_processor is not None:
            flag = {"de_markdown": "--logits_processor"}.get(params.logits_processor)
            raise InputError(
                f"{flag or '--flaming_tokens'} needs control of the first token's logits, "
                "which an OpenAI-compatible server does not offer; use --engine hf or vllm"
            )

    def _warn_once(self, what: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("server %s (%s): %s", self.client.url, self.kind, what)

    def _sampling(self, params: SamplingParams, n: int, seed: int | None, chat: bool) -> dict:
        """The request's sampling fields, with each server kind's own names."""
        body: dict = {
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if self.model:
            body["model"] = self.model
        if n != 1:
            body["n"] = n
        for name in ("frequency_penalty", "presence_penalty"):  # standard OpenAI fields
            if getattr(params, name):
                body[name] = getattr(params, name)
        stop = self._stop_strings(params)
        if stop:
            body["stop"] = stop
        if seed is not None:
            body["seed"] = seed
        if self.kind in VLLM_LIKE:
            body.update(
                repetition_penalty=params.repetition_penalty,
                top_k=-1,
                min_p=0.0,
                skip_special_tokens=True,
                include_stop_str_in_output=False,
            )
            if params.stop_token_ids:
                body["stop_token_ids"] = list(params.stop_token_ids)
            if self.kind == "vllm":
                body["return_token_ids"] = True  # exact per-sample token counts
                if not chat:
                    body["add_special_tokens"] = False
            if params.json_schema is not None:
                body["structured_outputs"] = {"json": params.json_schema}
            elif self.kind == "vllm" and params.stop_repetition:
                body["repetition_detection"] = repetition.vllm_params()  # ends loops there
        elif self.kind in LLAMA_CPP:
            body.update(repeat_penalty=params.repetition_penalty, top_k=0, min_p=0.0)
            if params.json_schema is not None:
                if self.kind == "llama.cpp":
                    body["json_schema"] = params.json_schema
                else:
                    self._warn_once("no JSON-schema constrained decoding; output is free text")
        else:
            if params.repetition_penalty != 1.0:
                self._warn_once("repetition_penalty is not sent (no standard OpenAI field)")
            if params.json_schema is not None:
                self._warn_once("no JSON-schema constrained decoding; output is free text")
        return body

    def _stop_strings(self, params: SamplingParams) -> list[str]:
        """The stop strings to send. vLLM's server takes at most MAX_STOP_STRINGS (the
        OpenAI limit) and strips special tokens from the text, so a stop string that is a
        special token already in stop_token_ids is redundant there and left out."""
        stop = list(params.stop)
        if self.kind not in VLLM_LIKE:
            return stop
        ids = set(params.stop_token_ids)
        convert = getattr(self.tokenizer, "convert_tokens_to_ids", None)
        if ids and convert is not None:
            stop = [s for s in stop if not (s in self._special and convert(s) in ids)]
        if len(stop) > MAX_STOP_STRINGS:
            raise InputError(
                f"the server at {self.client.url} takes at most {MAX_STOP_STRINGS} stop "
                f"strings, and this stage needs {len(stop)}: {stop}"
            )
        return stop

    def _prompt_text(self, prompt: Prompt):
        if getattr(prompt, "data", ()) and self.kind != "llama-cpp-python":
            if can_encode(self.tokenizer):  # record text holds special-token strings:
                prompt = encode(self.tokenizer, prompt)  # sent as ids, tokenised as text
        if isinstance(prompt, str):
            bos = self.tokenizer.bos_token
            return prompt[len(bos) :] if self.strip_bos and prompt.startswith(bos) else prompt
        if self.kind == "llama-cpp-python":  # its server takes text only
            return self.tokenizer.decode(list(prompt), skip_special_tokens=False)
        return [int(t) for t in prompt]

    def _prompt_field(self, prompts: Sequence[Prompt]):
        """The request's `prompt`: one prompt, or a list of texts or of id lists (the API
        takes no mix of both: with any ids, every prompt goes as ids)."""
        sent = [self._prompt_text(p) for p in prompts]
        if len(sent) == 1:
            return sent[0]
        if any(isinstance(x, list) for x in sent) and can_encode(self.tokenizer):
            sent = [
                x if isinstance(x, list) else encode(self.tokenizer, p)
                for x, p in zip(sent, prompts, strict=True)
            ]
        return sent

    def _plan(self, count: int, params: SamplingParams, base: list[int] | None, chat: bool):
        n_each = params.n if (params.n == 1 or self.n_per_request) else 1
        if base is None and not chat and self.kind in BATCHING and n_each == params.n:
            return [
                _Request(list(range(a, min(a + self.batch_size, count))), 0, params.n, None)
                for a in range(0, count, self.batch_size)
            ]
        return [
            _Request([i], j, n_each, None if base is None else base[i] + j)
            for i in range(count)
            for j in range(0, params.n, n_each)
        ]

    def _send(self, req: _Request, items: Sequence, params, chat: bool, abort) -> dict:
        body = self._sampling(params, req.n, req.seed, chat)
        if chat:
            path = self.client.api + "/chat/completions"
            body["messages"] = items[req.prompts[0]]
        else:
            path = self.client.api + "/completions"
            body["prompt"] = self._prompt_field([items[i] for i in req.prompts])
        return self._post(path, body, abort)

    def _post(self, path: str, body: dict, abort) -> dict:
        """POST `body`; the answer, which must hold a 'choices' list."""
        status, payload = self.client.request("POST", path, body, abort=abort)
        if status >= 400:
            raise self.client.refused(path, status, payload)
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
            raise ServerError(
                f"the server at {self.client.url} answered {path} without a 'choices' list"
            )
        return payload

    # -- responses -----------------------------------------------------------------

    def _looped(self, choice: dict, text: str, params: SamplingParams) -> bool:
        """Whether a completion that ran to max_tokens had looped (the same rule as the
        engines that stop such rows: magpie.engines.repetition)."""
        if params.json_schema is not None or self.kind == "vllm":
            return False  # constrained text; vLLM servers stop loops themselves
        ids = choice.get("token_ids")
        if ids is None:
            encode = getattr(self.tokenizer, "encode", None)
            ids = encode(text, add_special_tokens=False) if encode else []
        return repetition.first_repeat(ids) is not None

    def _count(self, text: str) -> int | None:
        encode = getattr(self.tokenizer, "encode", None)
        return len(encode(text, add_special_tokens=False)) if encode else None

    def _stop_reason(self, choice: dict, text: str, tokens: int | None, params) -> Any:
        for key in ("stop_reason", "matched_stop"):  # vLLM, SGLang
            if choice.get(key) is not None:
                return choice[key]
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if self.kind == "vllm":
            return eos  # vLLM reports None when the model's EOS ended it
        if self.kind == "llama-cpp-python" and tokens is not None:
            # Its usage counts the tokens of a stop string but not the EOS token.
            counted = self._count(text)
            if counted is None:
                return None
            if tokens <= counted:
                return eos
            plain = [s for s in params.stop if s and s not in self._special]
            return plain[0] if len(plain) == 1 else None
        return None

    def _parse(self, payload: dict, req: _Request, params, chat: bool) -> list[list[Completion]]:
        choices = sorted(payload["choices"], key=lambda c: c.get("index", 0))
        want = len(req.prompts) * req.n
        if len(choices) != want:
            raise ServerError(
                f"the server at {self.client.url} returned {len(choices)} completions for "
                f"{want} asked (prompts {req.prompts[0]}..{req.prompts[-1]})"
            )
        usage = payload.get("usage") or {}
        texts = []
        for c in choices:
            text = (c.get("message") or {}).get("content") if chat else c.get("text")
            texts.append(text or "")
        # Per-choice token counts: exact when the request had one choice (usage), or when
        # the server lists token ids; else counted with the tokenizer, or usage shared out.
        total = usage.get("completion_tokens")
        counts: list[int | None] = []
        for c, text in zip(choices, texts, strict=True):
            if len(choices) == 1 and total is not None:
                counts.append(int(total))
            elif c.get("token_ids") is not None:
                counts.append(len(c["token_ids"]))
            else:
                counts.append(self._count(text))
        if any(x is None for x in counts):
            chars = sum(len(t) for t in texts) or 1
            counts = [round((total or 0) * len(t) / chars) for t in texts]
        shared_prompt_tokens = int(usage.get("prompt_tokens") or 0) // max(1, len(req.prompts))
        flat: list[Completion] = []
        for c, text, tokens in zip(choices, texts, counts, strict=True):
            reason = FINISH.get(str(c.get("finish_reason")))
            if reason is None:
                raise ServerError(
                    f"the server at {self.client.url} ended a completion with "
                    f"finish_reason={c.get('finish_reason')!r} (expected 'stop' or 'length'): "
                    "it was aborted or failed, so it is not recorded; rerun the same command "
                    "to continue"
                )
            if reason == "length" and params.stop_repetition and self._looped(c, text, params):
                reason = "repetitive"  # a server without the check: flagged afterwards
            exact = tokens if len(choices) == 1 else None
            prompt_ids = c.get("prompt_token_ids")
            flat.append(
                Completion(
                    text=text,
                    finish_reason=reason,  # type: ignore[arg-type]
                    stop_reason=None
                    if reason == "length"
                    else self._stop_reason(c, text, exact, params),
                    prompt_tokens=len(prompt_ids) if prompt_ids else shared_prompt_tokens,
                    completion_tokens=int(tokens or 0),
                )
            )
        return [flat[k * req.n : (k + 1) * req.n] for k in range(len(req.prompts))]

    # -- generation ----------------------------------------------------------------

    def _run(self, items: Sequence, params: SamplingParams, seeds, chat: bool):
        self._check(params)
        if seeds is None and params.seed is None and self.seed is not None:
            params = dataclasses.replace(params, seed=self.seed)
        requests = self._plan(len(items), params, resolve_seeds(len(items), params, seeds), chat)
        answers = self.client.concurrently(
            requests,
            lambda req, abort: self._send(req, items, params, chat, abort),
            self.max_concurrency,
        )
        slots: dict[int, list[Completion | None]] = {}
        try:
            for req, payload in answers:
                for i, samples in zip(
                    req.prompts, self._parse(payload, req, params, chat), strict=True
                ):
                    slot = slots.setdefault(i, [None] * params.n)
                    slot[req.first : req.first + req.n] = samples
                    if all(s is not None for s in slot):
                        yield i, slots.pop(i)  # type: ignore[misc]
        finally:
            answers.close()  # stops the workers taking new requests

    def stream(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> Iterator[tuple[int, list[Completion]]]:
        """Raw completions (`/v1/completions`); yield each prompt's n completions when done
        (see `Engine.stream` for seeds)."""
        yield from self._run(prompts, params, seeds, chat=False)

    def chat_stream(
        self,
        conversations: Sequence[list[dict]],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> Iterator[tuple[int, list[Completion]]]:
        """The same through the server's chat endpoint: the SERVER applies the template."""
        yield from self._run(conversations, params, seeds, chat=True)

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        return collect(self.stream(prompts, params, seeds), len(prompts))

    # -- next-token probabilities ----------------------------------------------------

    def next_token_probs(
        self, prompts: Sequence[Prompt], token_ids: Sequence[int]
    ) -> list[list[float]]:
        """The probability of each of `token_ids` as the next token after each prompt, in
        prompt order, from the server's logprobs of one greedy token.

        vLLM servers are asked for exactly these ids (`logprob_token_ids`, keys
        `token_id:N` with `return_tokens_as_token_ids`): exact. Other servers give their
        `TOP_LOGPROBS` most likely tokens (`logprobs`), keyed by text; a token among
        `token_ids` that is not among them gets 0 (its probability is below the least
        listed), so a prompt whose every token is missing reads all zeros. A server that
        returns no logprobs is refused with one error (`NO_LOGPROBS`)."""
        wanted = [int(t) for t in token_ids]
        decode = getattr(self.tokenizer, "decode", None)  # a server-reported one has none
        texts = {decode([t]): t for t in wanted} if decode else {}
        per = self.batch_size if self.kind in BATCHING else 1
        requests = [list(range(a, min(a + per, len(prompts)))) for a in range(0, len(prompts), per)]
        out: list[list[float]] = [[math.nan] * len(wanted) for _ in prompts]
        answers = self.client.concurrently(
            requests,
            lambda req, abort: self._send_probs(req, prompts, wanted, abort),
            self.max_concurrency,
        )
        try:
            for req, payload in answers:
                choices = sorted(payload["choices"], key=lambda c: c.get("index", 0))
                if len(choices) != len(req):
                    raise ServerError(
                        f"the server at {self.client.url} returned {len(choices)} completions "
                        f"for {len(req)} prompts"
                    )
                for i, choice in zip(req, choices, strict=True):
                    found = _first_token_logprobs(choice.get("logprobs"), texts)
                    if found is None:
                        raise InputError(NO_LOGPROBS.format(url=self.client.url, kind=self.kind))
                    out[i] = [math.exp(found[t]) if t in found else 0.0 for t in wanted]
        finally:
            answers.close()
        return out

    def _send_probs(self, req: list[int], prompts: Sequence, wanted: list[int], abort) -> dict:
        body: dict = {"max_tokens": 1, "temperature": 0.0, "logprobs": TOP_LOGPROBS}
        if self.model:
            body["model"] = self.model
        if self.kind == "vllm":  # `logprobs` must be set; with these ids it is not read
            body.update(
                logprob_token_ids=wanted,
                return_tokens_as_token_ids=True,
                add_special_tokens=False,
            )
        body["prompt"] = self._prompt_field([prompts[i] for i in req])
        return self._post(self.client.api + "/completions", body, abort)


# Top logprobs asked of servers that cannot be asked for given token ids.
TOP_LOGPROBS = 20
NO_LOGPROBS = (
    "the server at {url} ({kind}) returned no logprobs for /v1/completions: the judge reads "
    "the rating tokens' probabilities from the first token's top logprobs. Serve the model "
    "where completions return logprobs (vLLM, llama.cpp's llama-server, llama-cpp-python "
    "with logits_all) or use --engine hf or vllm"
)


def _first_token_logprobs(logprobs, texts: dict[str, int]) -> dict[int, float] | None:
    """{token id: logprob} of the first generated token's top logprobs, for the tokens
    in `texts` (text -> id); keys `token_id:N` are read as ids. Both OpenAI forms: the
    completions one ({"top_logprobs": [{text: logprob}]}) and the chat one that
    llama-server also uses ({"content": [{"top_logprobs": [{"token", "logprob"}]}]}).
    None when there are none."""
    if not isinstance(logprobs, dict):
        return None
    pairs: list[tuple[str, float]] = []
    top = logprobs.get("top_logprobs")
    content = logprobs.get("content")
    if isinstance(top, list) and top and isinstance(top[0], dict):
        pairs = [(str(k), v) for k, v in top[0].items()]
    elif isinstance(content, list) and content and isinstance(content[0], dict):
        entries = content[0].get("top_logprobs") or []
        pairs = [(str(e.get("token")), e.get("logprob")) for e in entries if isinstance(e, dict)]
    if not pairs:
        return None
    found: dict[int, float] = {}
    for key, value in pairs:
        if not isinstance(value, (int, float)):
            continue
        if key.startswith("token_id:") and key[9:].lstrip("-").isdigit():
            found[int(key[9:])] = float(value)
        elif key in texts:
            found[texts[key]] = float(value)
    return found
