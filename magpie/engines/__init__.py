"""Engines: one interface (`base.Engine`), several back ends, picked with `--engine`."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging

from magpie.compat import cuda_visible_devices
from magpie.engines.base import Completion, Engine, SamplingParams
from magpie.engines.openai import OpenAIEngine
from magpie.engines.server_tokenizer import server_tokenizer
from magpie.engines.vllm import VLLMEngine
from magpie.executor import LocalExecutor
from magpie.models import load_tokenizer, resolve_model
from magpie.ray_executor import RayExecutor
from magpie.records import InputError

__all__ = [
    "Completion",
    "Engine",
    "EngineOptions",
    "SamplingParams",
    "load_engine",
    "load_tokenizer_for",
    "make_executor",
    "pick_engine",
]

log = logging.getLogger("magpie")
ENGINES = ("hf", "vllm", "openai")


def pick_engine(engine: str | None) -> str:
    """The engine to use: as asked, else vllm when importable with a GPU, else hf."""
    if engine:
        if engine not in ENGINES:
            raise InputError(f"--engine must be one of {', '.join(ENGINES)}, not '{engine}'")
        return engine
    if importlib.util.find_spec("vllm") is not None:
        import torch

        if torch.cuda.is_available():
            return "vllm"
    return "hf"


def load_engine(engine: str | None, model_path: str, **options) -> Engine:
    """Build an engine. `options` not meant for the chosen back end are ignored."""
    name = pick_engine(engine)
    if options.get("response_mode") not in (None, "template", "chat"):
        raise InputError(
            f"--response_mode must be template or chat, not {options['response_mode']!r}"
        )
    if options.get("response_mode") == "chat" and name != "openai":
        raise InputError("--response_mode chat needs --engine openai (a server's chat endpoint)")
    log.info("engine: %s%s", name, "" if engine else " (picked automatically)")
    if name == "hf":
        from magpie.engines.hf import HFEngine

        keys = (
            "dtype",
            "device",
            "batch_size",
            "seed",
            "trust_remote_code",
            "tokenizer",
            "batch_invariant",
        )
        return HFEngine(model_path, **{k: v for k, v in options.items() if k in keys})
    if name == "vllm":
        keys = (
            "dtype",
            "tensor_parallel_size",
            "gpu_memory_utilization",
            "max_model_len",
            "swap_space",
            "seed",
            "trust_remote_code",
            "logits_processors",
            "batch_invariant",
        )
        engine_obj = VLLMEngine(
            resolve_model(model_path), **{k: v for k, v in options.items() if k in keys}
        )
        engine_obj.model_path = model_path
        return engine_obj

    keys = (
        "base_url",
        "api_key_env",
        "max_concurrency",
        "request_timeout",
        "response_mode",
        "seed",
        "tokenizer",
        "trust_remote_code",
    )
    return OpenAIEngine(model_path, **{k: v for k, v in options.items() if k in keys})


def load_tokenizer_for(
    engine: str | None, model_path: str, trust_remote_code: bool = False, **options
):
    """The tokenizer for profiles and chat templates, loaded before any weights.

    For a server (`openai`) the model's files may not be on this machine: the server
    engine then supplies a tokenizer-like object built from what the server reports.
    """
    if pick_engine(engine) == "openai":
        return server_tokenizer(model_path, trust_remote_code=trust_remote_code, **options)

    return load_tokenizer(model_path, trust_remote_code)


@dataclasses.dataclass
class EngineOptions:
    """The engine and executor flags of every stage that runs a model, kept in one place."""

    engine: str | None = None
    device: str | None = None
    dtype: str = "auto"
    batch_size: int = 64
    batch_invariant: bool | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    max_model_len: int = 4096
    swap_space: float = 2.0
    trust_remote_code: bool = False
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8
    request_timeout: float = 600.0
    executor: str = "local"
    ray_address: str | None = None
    num_replicas: int = 1
    gpus_per_replica: float | None = None
    cpus_per_replica: float = 1

    def tokenizer(self, model_path: str):
        """The model's tokenizer, loaded before any weights (see load_tokenizer_for)."""
        return load_tokenizer_for(
            self.engine,
            model_path,
            self.trust_remote_code,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
        )

    def __post_init__(self) -> None:
        # The original's --device 0 / 0,1,2,3 named GPUs (CUDA_VISIBLE_DEVICES).

        self.device = cuda_visible_devices(self.device)

    def make_executor(self):
        """The executor these flags ask for: local, or Ray replicas of the model."""
        return make_executor(
            self.executor,
            self.ray_address,
            self.num_replicas,
            self.gpus_per_replica,
            self.cpus_per_replica,
            engine=pick_engine(self.engine),
            tensor_parallel_size=self.tensor_parallel_size,
        )

    def run(self, step, model_path: str, **options):
        """Run `step` (magpie.executor.Step) on the chosen executor with this model: the
        engine is loaded where the step runs (here, or once per Ray replica)."""
        executor = self.make_executor()
        if executor.name == "ray":
            options.pop("tokenizer", None)  # each replica loads its own
        try:
            return executor.run(step, functools.partial(self.load, model_path, **options))
        finally:
            executor.close()

    def load(self, model_path: str, **options) -> Engine:
        """The engine, with these flags and the stage's own `options` (seed, tokenizer,
        logits_processors=True when the stage uses a first-token processor...)."""
        name = pick_engine(self.engine)
        for flag, default in VLLM_ONLY_FLAGS.items():
            value = getattr(self, flag)
            if name != "vllm" and value != default:
                log.info("note: --%s %s ignored by the %s engine (vLLM only)", flag, value, name)
        flags = {k: v for k, v in vars(self).items() if k not in ("engine", *EXECUTOR_FLAGS)}
        return load_engine(self.engine, model_path, **flags, **options)


def make_executor(
    executor: str = "local",
    ray_address: str | None = None,
    num_replicas: int = 1,
    gpus_per_replica: float | None = None,
    cpus_per_replica: float = 1,
    engine: str = "hf",
    tensor_parallel_size: int = 1,
):
    """An executor (magpie.executor): `local` (this process) or `ray` (replicas on a Ray
    cluster; see magpie.ray_executor.RayExecutor for the flags). InputError otherwise."""

    if executor == "local":
        return LocalExecutor()
    if executor != "ray":
        raise InputError(f"--executor must be local or ray, not {executor!r}")

    return RayExecutor(
        ray_address,
        num_replicas,
        gpus_per_replica,
        cpus_per_replica,
        engine=engine,
        tensor_parallel_size=tensor_parallel_size,
    )


EXECUTOR_FLAGS = ("executor", "ray_address", "num_replicas", "gpus_per_replica", "cpus_per_replica")

# Flags only vLLM reads, with their defaults: set on another engine, they get a note.
VLLM_ONLY_FLAGS = {"tensor_parallel_size": 1, "gpu_memory_utilization": None, "swap_space": 2.0}

ENGINE_FLAGS_HELP = {
    "engine": "hf, vllm or openai; default vllm with a GPU, else hf.",
    "device": "torch device for the hf engine (cpu, cuda, cuda:N); GPU indices (0 or "
    "0,1,2,3) set CUDA_VISIBLE_DEVICES, as the original's --device did.",
    "dtype": "auto, bfloat16, float16 or float32. auto: bfloat16 on a GPU or a CPU with "
    "native bf16 (AVX512-BF16, AMX), else float32 (several times faster there; "
    "magpie.dtypes); vLLM takes bfloat16 for auto, as before.",
    "batch_size": "rows decoded together by the hf engine.",
    "batch_invariant": "a row's numbers independent of the rest of its batch, so the same "
    "seed gives the same records at any batch size, resume or replica. hf: on by default "
    "(the model runs batch-invariant attention and products; False: transformers' default, "
    "not exact); "
    "vllm: asks for vLLM's own batch-invariant mode (GPUs only; refused on the CPU build: "
    "use --dtype float32 there).",
    "tensor_parallel_size": "GPUs per model for vLLM.",
    "gpu_memory_utilization": "share of GPU memory vLLM may take; default 0.95 on a GPU, "
    "0.2 on vLLM's CPU build (there it is the share of RAM for the KV cache).",
    "max_model_len": "context length for vLLM.",
    "swap_space": "CPU swap space (GiB) for vLLM.",
    "trust_remote_code": "allow the model's own code (off unless asked).",
    "base_url": "OpenAI-compatible server for --engine openai (e.g. http://127.0.0.1:8000/v1).",
    "api_key_env": "environment variable holding the server's API key (never printed).",
    "max_concurrency": "requests in flight at once with --engine openai.",
    "request_timeout": "seconds before a server request is retried.",
    "executor": "local (this process) or ray (replicas of the model on a Ray cluster; the "
    "same records as local).",
    "ray_address": "an existing Ray cluster for --executor ray (e.g. auto or "
    "ray://head:10001); default a local one started for this run.",
    "num_replicas": "model replicas with --executor ray (one engine each).",
    "gpus_per_replica": "GPUs per replica with --executor ray; default "
    "tensor_parallel_size for vLLM, 1 for hf when the cluster has GPUs, else 0.",
    "cpus_per_replica": "CPUs Ray reserves per replica (its torch threads on CPU).",
}
