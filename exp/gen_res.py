"""Stage 2: answer each instruction with the same model (the original's gen_res.py)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.engines import load_engine, load_tokenizer_for  # noqa: E402
from magpie.models import canonical_name  # noqa: E402
from magpie.profiles import get_profile  # noqa: E402
from magpie.records import InputError, read_records  # noqa: E402
from magpie.responses import ResponseJob, response_file_name  # noqa: E402
from magpie.stage import run_cli  # noqa: E402

log = logging.getLogger("magpie")


def main(
    input_file: str | None = None,
    model_path: str = "",
    batch_size: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    max_tokens: int = 4096,
    max_model_len: int = 4096,
    seed: int | None = None,
    checkpoint_every: int = 20,
    engine: str | None = None,
    device: str | None = None,
    dtype: str = "bfloat16",
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.95,
    swap_space: float = 2.0,
    trust_remote_code: bool = False,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    max_concurrency: int = 8,
    request_timeout: float = 600.0,
    response_mode: str | None = None,
    output_file: str | None = None,
):
    """Generate a response for every instruction of INPUT_FILE (.json or .jsonl).

    Args:
      input_file: records with an `instruction` field (the output of gen_ins.py).
      model_path: hub id or local folder; empty = the embedded SmolLM2-135M-Instruct.
      batch_size: rows decoded together by the hf engine.
      temperature: sampling temperature; 0 = greedy.
      top_p: nucleus sampling threshold.
      repetition_penalty: CTRL-style penalty on tokens already present.
      max_tokens: most tokens per response; longer ones are flagged "unfinished".
      max_model_len: context length for vLLM.
      seed: random seed for sampling.
      checkpoint_every: kept for compatibility; every record is journaled as it is made.
      engine: hf, vllm or openai; default vllm with a GPU, else hf.
      device: torch device for the hf engine.
      dtype: bfloat16, float16 or float32.
      tensor_parallel_size: GPUs per model for vLLM.
      gpu_memory_utilization: share of GPU memory vLLM may take.
      swap_space: CPU swap space (GiB) for vLLM.
      trust_remote_code: allow the model's own code (off unless asked).
      base_url: OpenAI-compatible server for --engine openai (e.g. http://127.0.0.1:8000/v1).
      api_key_env: environment variable holding the server's API key (never printed).
      max_concurrency: requests in flight at once with --engine openai.
      request_timeout: seconds before a server request is retried.
      response_mode: with --engine openai: template (default; raw completion of the chat
        template rendered here) or chat (the server's chat endpoint applies its template).
      output_file: default <input stem>_res.json next to the input.
    """
    if not input_file:
        raise InputError("--input_file is required")
    output = Path(output_file) if output_file else response_file_name(input_file)
    if output.exists() and not Path(f"{output}.journal.jsonl").exists():
        print(f"[gen_res] {output} is already complete; nothing to do")
        return
    read_records(input_file)  # bad input fails before any model loads
    name = canonical_name(model_path)
    tokenizer = load_tokenizer_for(
        engine, model_path, trust_remote_code, base_url=base_url, api_key_env=api_key_env
    )
    job = ResponseJob(
        get_profile(name, tokenizer),
        input_file,
        output,
        model_name=name,
        temperature=temperature,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        max_tokens=max_tokens,
        seed=seed,
    )
    eng = load_engine(
        engine,
        model_path,
        dtype=dtype,
        device=device,
        batch_size=batch_size,
        seed=seed,
        trust_remote_code=trust_remote_code,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        swap_space=swap_space,
        tokenizer=tokenizer,
        base_url=base_url,
        api_key_env=api_key_env,
        max_concurrency=max_concurrency,
        request_timeout=request_timeout,
        response_mode=response_mode,
    )
    summary = job.run(eng)
    print(summary.line())
    print(f"[gen_res] wrote {output}")


if __name__ == "__main__":
    run_cli(main)
