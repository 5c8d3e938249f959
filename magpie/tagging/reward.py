"""Reward mission: a sequence-classification reward model scores each response given its
instruction (`instruct_reward`, the raw single logit; `reward_model` names the model).

Why batched by length: the original scored one record per forward pass (§9 items 36-37);
here records are sorted by token length and scored in padded batches (at most
`batch_size` rows and `MAX_BATCH_TOKENS` padded tokens), and every input fits the
model's context: an input too long loses the start of its instruction (user turns, the
first first), never the answer being judged, and the record is flagged
(`reward_truncated`). Models with their own code (custom heads such as ArmoRM's) load only
with an explicit trust_remote_code; a checkpoint that is not a sequence classifier is
refused, since transformers would bolt a random head on it and score noise.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from magpie.conversation import Conversation
from magpie.dtypes import resolve_dtype
from magpie.prompt_text import as_data, encode, render_with_data
from magpie.records import InputError

MAX_BATCH_TOKENS = 32768


def check_reward_model(model_path: str, trust_remote_code: bool = False):
    """Refuse, before any weights load, what cannot be a single-logit reward model;
    returns its config."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise InputError(f"reward model {model_path}: cannot read its config ({e})") from None
    custom = "AutoModelForSequenceClassification" in (getattr(config, "auto_map", None) or {})
    if custom and not trust_remote_code:
        raise InputError(
            f"reward model {model_path} brings its own model code; pass --trust_remote_code "
            "to run it"
        )
    archs = getattr(config, "architectures", None) or []
    if not custom and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise InputError(
            f"reward model {model_path} is not a sequence-classification model "
            f"(architectures: {', '.join(archs) or 'none'})"
        )
    if not custom and config.num_labels != 1:
        raise InputError(
            f"reward model {model_path} has {config.num_labels} labels; a reward model has "
            "a single-logit head (models with custom heads need --trust_remote_code)"
        )
    return config


def reward_tokenizer(model_path: str, trust_remote_code: bool = False):
    """The reward model's tokenizer; refused without a chat template (it renders the
    conversation judged)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"reward model {model_path}: its tokenizer has no chat template")
    return tokenizer


def context_limit(max_length: int, config, tokenizer) -> int:
    """Tokens an input may have: `max_length`, the model's positions and the tokenizer's
    own limit (when it sets a real one), whichever is least."""
    limits = [max_length, getattr(config, "max_position_embeddings", None)]
    if (tokenizer.model_max_length or 0) < 1_000_000:
        limits.append(tokenizer.model_max_length)
    return min(x for x in limits if x)


def reward_settings(model_path: str, max_length: int, trust_remote_code: bool = False) -> dict:
    """The reward mission's journal fingerprint, known before the weights load (checked
    as RewardScorer checks them): what a RewardScorer's `settings()` will say."""
    config = check_reward_model(model_path, trust_remote_code)
    tokenizer = reward_tokenizer(model_path, trust_remote_code)
    return {"reward_model": model_path, "max_length": context_limit(max_length, config, tokenizer)}


class RewardScorer:
    """Scores conversations with a reward model, in length-sorted batches."""

    def __init__(
        self,
        model_path: str,
        *,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 64,
        max_length: int = 4096,
        trust_remote_code: bool = False,
    ):
        from transformers import AutoModelForSequenceClassification

        check_reward_model(model_path, trust_remote_code)
        self.model_path = model_path
        self.judge = model_path
        self.batch_size = max(1, batch_size)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = reward_tokenizer(model_path, trust_remote_code)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_path,
            dtype=getattr(torch, resolve_dtype(dtype, self.device.type)),
            trust_remote_code=trust_remote_code,
        )
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            # Batches need a pad id to find each row's last token.
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.max_length = context_limit(max_length, self.model.config, self.tokenizer)
        self.truncated = 0
        self.tokens = 0

    def settings(self) -> dict:
        return {"reward_model": self.model_path, "max_length": self.max_length}

    def encode(self, conv: Conversation) -> list[int]:
        """The reward model's chat template over the conversation, fitted to its context
        (see `fit`). The template writes its own BOS, so no special tokens are added."""
        return self.fit(conv)[0]

    def _render(self, messages: list[dict]) -> list[int]:
        def render(ms: list[dict]) -> str:
            return self.tokenizer.apply_chat_template(
                ms, tokenize=False, add_generation_prompt=False
            )

        return encode(self.tokenizer, render_with_data(self.tokenizer, render, messages))

    def fit(self, conv: Conversation) -> tuple[list[int], bool]:
        """(token ids, truncated). Too long an input loses the start of its user turns,
        earliest first, so the answers stay whole; only an answer longer than the whole
        context is cut (from its start, keeping the template's opening tokens)."""
        messages = [dict(m) for m in conv.messages()]
        ids = self._render(messages)
        if len(ids) <= self.max_length:
            return ids, False
        self.truncated += 1
        for m in messages:
            if m["role"] != "user":
                continue
            while len(ids) > self.max_length and m["content"]:
                content = encode(self.tokenizer, as_data(m["content"]))
                cut = min(len(content), len(ids) - self.max_length + 1)
                m["content"] = self.tokenizer.decode(content[cut:]).lstrip()
                ids = self._render(messages)
            if len(ids) <= self.max_length:
                return ids, True
        head = ids[:4]
        return head + ids[len(ids) - (self.max_length - len(head)) :], True

    def _batches(self, encoded: list[list[int]]) -> Iterator[list[int]]:
        """Indices, longest first, grouped under the row and padded-token limits."""
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        batch: list[int] = []
        for i in order:
            width = len(encoded[batch[0]]) if batch else len(encoded[i])
            if batch and (
                len(batch) >= self.batch_size or (len(batch) + 1) * width > MAX_BATCH_TOKENS
            ):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    @torch.inference_mode()
    def scores(self, encoded: list[list[int]]) -> Iterator[tuple[int, float]]:
        """(index, score) for token-id sequences, batch by batch."""
        left = self.tokenizer.padding_side == "left"
        for batch in self._batches(encoded):
            padded = self.tokenizer.pad(
                {"input_ids": [encoded[i] for i in batch]}, padding=True, return_tensors="pt"
            )
            ids = padded["input_ids"].to(self.device)
            mask = padded["attention_mask"].to(self.device)
            kwargs = {"input_ids": ids, "attention_mask": mask}
            if left:  # keep each row's positions as if it were alone
                kwargs["position_ids"] = (mask.cumsum(dim=1) - 1).clamp(min=0)
            out = self.model(**kwargs)
            score = getattr(out, "score", None)
            values = (score if score is not None else out.logits).float().reshape(len(batch), -1)
            self.tokens += int(mask.sum())
            yield from zip(batch, values[:, 0].tolist(), strict=True)

    def tag(
        self, mission: str, items: Sequence[tuple[int, Conversation]]
    ) -> Iterator[tuple[int, dict, str | None]]:
        fitted = [self.fit(conv) for _, conv in items]
        for k, value in self.scores([ids for ids, _ in fitted]):
            fields = {
                "instruct_reward": value,
                "reward_model": self.model_path,
                "reward_truncated": fitted[k][1],
            }
            yield items[k][0], fields, None
