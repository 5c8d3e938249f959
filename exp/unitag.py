"""Tagging: difficulty, quality, sample_quality, classification, safety, reward, language
(the original's unitag.py; groups `all` and `magpie` run several missions in one go)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.records import InputError  # noqa: E402
from magpie.stage import run_cli  # noqa: E402
from magpie.tagging.job import TagOptions, run  # noqa: E402


def torch_device(device) -> str | None:
    """The original's `--device 0` (a GPU index) as a torch device; names pass through."""
    if device is None or device == "":
        return None
    text = str(device)
    return f"cuda:{text}" if text.isdigit() else text


def main(
    input_file: str | None = None,
    tag_mission: str = "quality",
    model_path: str = "",
    guard_model_path: str | None = None,
    reward_model_path: str | None = None,
    batch_size: int = 64,
    checkpoint_every: int = 40,
    save_as: str = "json",
    engine: str | None = None,
    device: str | None = None,
    dtype: str = "bfloat16",
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float | None = None,
    max_model_len: int = 4096,
    max_tokens: int = 1024,
    temperature: float = 0.0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    seed: int | None = None,
    trust_remote_code: bool = False,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    max_concurrency: int = 8,
    request_timeout: float = 600.0,
    overwrite: bool = False,
):
    """Tag every record of INPUT_FILE (.json or .jsonl) for TAG_MISSION.

    Writes <input stem>_<suffix>.<save_as> next to the input (suffixes _difficulty,
    _quality, _sample_quality, _category, _safety, _reward, _language); a group chains
    them. Records may be Magpie records (instruction/response, instruction_k/response_k),
    input/output, messages or conversation lists of {role, content}, or ShareGPT
    conversations of {from, value}.

    Args:
      input_file: the records to tag.
      tag_mission: difficulty, quality, sample_quality, classification, safety, reward,
        language, or a group: all (every mission, the original's order) or magpie
        (quality, sample_quality, difficulty).
      model_path: the tagger LLM (hub id or folder); empty = the embedded SmolLM2-135M.
      guard_model_path: a Llama-Guard-family model for safety; without one the tagger
        LLM judges safety with this project's taxonomy prompt.
      reward_model_path: a sequence-classification reward model (single logit), needed
        by the reward mission (a group without one skips reward).
      batch_size: rows decoded together by the hf engine; rows per reward-model batch.
      checkpoint_every: kept for compatibility; every record is journaled as it is made.
      save_as: json or jsonl.
      engine: hf, vllm or openai; default vllm with a GPU, else hf.
      device: torch device for the hf engine and the reward model (a bare number means
        that CUDA device, as the original's --device).
      dtype: bfloat16, float16 or float32 (no FP8 quantisation by default: it can change
        labels).
      tensor_parallel_size: GPUs per model for vLLM.
      gpu_memory_utilization: share of GPU memory vLLM may take; default 0.95 on a GPU,
        0.2 on vLLM's CPU build (there the share of RAM for the KV cache).
      max_model_len: context length for vLLM; reward inputs are truncated to it (and to
        the reward model's own limit).
      max_tokens: most tokens per tagger answer.
      temperature: tagger sampling temperature; 0 = greedy (the original's).
      top_p: nucleus sampling threshold.
      repetition_penalty: CTRL-style penalty on tokens already present.
      seed: random seed for sampling.
      trust_remote_code: allow models' own code (custom reward heads need it).
      base_url: OpenAI-compatible server for --engine openai.
      api_key_env: environment variable holding the server's API key (never printed).
      max_concurrency: requests in flight at once with --engine openai.
      request_timeout: seconds before a server request is retried.
      overwrite: replace outputs made with other settings or another input (a rerun
        with the same ones skips them; a mismatch is refused without this).
    """
    if not input_file:
        raise InputError("--input_file is required")
    opts = TagOptions(
        model_path=model_path or "",
        guard_model_path=guard_model_path or None,
        reward_model_path=reward_model_path or None,
        save_as=save_as,
        engine=engine,
        batch_size=batch_size,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
        dtype=dtype,
        device=torch_device(device),
        max_model_len=max_model_len,
        trust_remote_code=trust_remote_code,
        overwrite=overwrite,
        engine_options={
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "base_url": base_url,
            "api_key_env": api_key_env,
            "max_concurrency": max_concurrency,
            "request_timeout": request_timeout,
        },
    )
    outputs = run(str(tag_mission), input_file, opts)
    print(f"[unitag] final output: {outputs[-1]}")


if __name__ == "__main__":
    run_cli(main)
