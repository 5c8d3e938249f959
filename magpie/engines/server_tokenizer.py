"""The tokenizer of a model served by an OpenAI-compatible server (`server_tokenizer`).

Profiles and response prompts need the model's chat template and special tokens. The
model's own tokenizer is used when it is on this machine (the embedded default, a folder,
a .gguf file, a hub id in the local Hugging Face cache: never the network); otherwise a
`ServerTokenizer` is built from what the server reports: llama.cpp's llama-server at
`GET /props` (special-token ids through `POST /tokenize`), vLLM at `GET /tokenizer_info`
(with `--enable-tokenizer-info-endpoint`). llama-cpp-python's server reports neither.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from magpie.chat_template import render_chat
from magpie.engines.http_client import ServerClient
from magpie.models import is_default_model, load_tokenizer
from magpie.records import InputError

log = logging.getLogger("magpie")


class _AddedToken:
    """The bit of transformers' AddedToken that profiles read (`str()` and `.special`)."""

    def __init__(self, content: str, special: bool = True):
        self.content, self.special = content, special

    def __str__(self) -> str:
        return self.content

    def __repr__(self) -> str:
        return f"AddedToken({self.content!r})"


class ServerTokenizer:
    """What profiles and response prompts need from a tokenizer, built from what a server
    reports (chat template, BOS/EOS and special-token ids) when the model's own tokenizer
    is not on this machine. It cannot tokenize; token counts then come from the server."""

    def __init__(
        self,
        chat_template: str,
        bos_token: str = "",
        eos_token: str = "",
        special_ids: dict[str, int] | None = None,
        name: str = "",
    ):
        self.chat_template = chat_template
        self.bos_token = bos_token or None
        self.eos_token = eos_token or None
        self.name_or_path = name
        self._ids = dict(special_ids or {})
        self.eos_token_id = self._ids.get(eos_token) if eos_token else None
        self.bos_token_id = self._ids.get(bos_token) if bos_token else None
        self.pad_token_id = None

    @property
    def all_special_tokens(self) -> list[str]:
        tokens = [t for t in (self.bos_token, self.eos_token) if t]
        return list(dict.fromkeys([*tokens, *self._ids]))

    @property
    def added_tokens_decoder(self) -> dict[int, _AddedToken]:
        return {i: _AddedToken(t) for t, i in self._ids.items()}

    def convert_tokens_to_ids(self, tokens: str | list[str]):
        if isinstance(tokens, str):
            return self._ids.get(tokens)
        return [self._ids.get(t) for t in tokens]

    def apply_chat_template(
        self, messages: list[dict], tokenize: bool = False, add_generation_prompt: bool = False, **_
    ) -> str:
        if tokenize:
            raise NotImplementedError("a server-reported tokenizer renders text only")

        return render_chat(
            self.chat_template,
            messages,
            add_generation_prompt,
            bos_token=self.bos_token or "",
            eos_token=self.eos_token or "",
        )

    def __repr__(self) -> str:
        return f"ServerTokenizer({self.name_or_path!r})"


def _token_text(value: Any) -> str:
    if isinstance(value, dict):  # an AddedToken serialised as a dict
        return str(value.get("content") or "")
    return str(value or "")


def _local_tokenizer(model_path: str, trust_remote_code: bool):
    """The model's own tokenizer when it is on this machine, else None (never the network)."""

    if is_default_model(model_path):
        return load_tokenizer(model_path, trust_remote_code)
    path = Path(model_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        except Exception as e:  # noqa: BLE001 - any failure is a bad model file
            raise InputError(f"model {model_path}: cannot read its tokenizer ({e})") from None
    if path.exists():
        return load_tokenizer(str(path), trust_remote_code)
    from transformers import AutoTokenizer

    try:  # a hub id already in the local Hugging Face cache
        return AutoTokenizer.from_pretrained(
            model_path, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except Exception:  # noqa: BLE001 - not cached: ask the server instead
        return None


def _server_special_ids(client: ServerClient, tokens: list[str]) -> dict[str, int]:
    """Ids of special tokens through llama-server's or vLLM's /tokenize (single-token only)."""
    ids: dict[str, int] = {}
    for token in dict.fromkeys(t for t in tokens if t):
        for body in (
            {"content": token, "add_special": False, "parse_special": True},
            {"prompt": token, "add_special_tokens": False},
        ):
            status, payload = client.request("POST", client.root + "/tokenize", body)
            found = payload.get("tokens") if status < 400 and isinstance(payload, dict) else None
            if found is not None:
                if len(found) == 1:
                    first = found[0]
                    ids[token] = int(first["id"] if isinstance(first, dict) else first)
                break
    return ids


def server_tokenizer(
    model_path: str,
    trust_remote_code: bool = False,
    base_url: str | None = None,
    api_key_env: str | None = "OPENAI_API_KEY",
):
    """The tokenizer for profiles and response prompts when generating through a server.

    The real tokenizer when `model_path` loads locally (the embedded default, a folder, a
    .gguf file, a hub id in the local cache); else one built from what the server reports:
    llama-server's `GET /props`, or vLLM's `GET /tokenizer_info`.
    """
    local = _local_tokenizer(model_path, trust_remote_code)
    if local is not None:
        return local
    if not base_url:
        raise InputError(
            f"model {model_path}: its tokenizer is not on this machine and no --base_url "
            "was given to ask the server for its chat template"
        )
    client = ServerClient(base_url, api_key_env, timeout=60.0)
    template, bos, eos, ids = None, "", "", {}
    props = client.get_json(client.root + "/props")  # llama.cpp's llama-server
    if isinstance(props, dict) and props.get("chat_template"):
        template = props["chat_template"]
        bos, eos = _token_text(props.get("bos_token")), _token_text(props.get("eos_token"))
        ids = _server_special_ids(client, [bos, eos])
    else:
        info = client.get_json(client.root + "/tokenizer_info")  # vLLM, when enabled
        if isinstance(info, dict) and info.get("chat_template"):
            template = info["chat_template"]
            bos, eos = _token_text(info.get("bos_token")), _token_text(info.get("eos_token"))
            added = info.get("added_tokens_decoder") or {}
            ids = {_token_text(v): int(k) for k, v in added.items() if _token_text(v)}
            missing = [t for t in (bos, eos) if t and t not in ids]
            ids.update(_server_special_ids(client, missing))
    client.close()
    if not template:
        raise InputError(
            f"model {model_path}: its tokenizer is not on this machine, and the server at "
            f"{client.url} does not report the chat template (llama.cpp's llama-server does "
            "at /props; vLLM at /tokenizer_info when started with "
            "--enable-tokenizer-info-endpoint; llama-cpp-python's server never does). Pass "
            "--model_path a local model folder, a .gguf file, or a hub id in the local "
            "Hugging Face cache"
        )
    log.info("tokenizer: chat template and special tokens reported by %s", client.url)
    return ServerTokenizer(template, bos, eos, ids, name=model_path)
