"""Preference data, step 2: score every response with a reward model, or with a chat model
as judge (gen_po_rewards.py)."""

from __future__ import annotations

import functools
from pathlib import Path

from magpie.compat import torch_device
from magpie.engines import EngineOptions
from magpie.judge import JUDGE, check_judge, is_judge, judge_model_of, judge_name
from magpie.preference import RewardJob, load_scorer, reward_file_name
from magpie.records import InputError, overwriting
from magpie.stage import already_complete, run_cli

DEFAULT_REWARD_MODEL = "RLHFlow/ArmoRM-Llama3-8B-v0.1"


def main(
    input_file: str | None = None,
    reward_model_path: str | None = None,
    reward_model: str | None = None,
    judge_model_path: str | None = None,
    batch_size: int = 16,
    max_length: int = 4096,
    device: str | None = None,
    dtype: str = "bfloat16",
    trust_remote_code: bool = False,
    engine: str | None = None,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    max_concurrency: int = 8,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float | None = None,
    max_model_len: int = 4096,
    output_file: str | None = None,
    checkpoint_every: int = 5000,
    overwrite: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    num_replicas: int = 1,
    gpus_per_replica: float | None = None,
    cpus_per_replica: float = 1,
):
    """Add the scores ([{"score": s}] aligned with `responses`) and `rewards_model` to
    every record of INPUT_FILE (the output of gen_po_multi_res.py). The scores go to
    `rewards_armorm` when ArmoRM made them (the original's field), else to `rewards`.

    Args:
      input_file: records with `instruction` and `responses`.
      reward_model_path: any sequence-classification reward model with a single-logit
        head (hub id or local folder); default RLHFlow/ArmoRM-Llama3-8B-v0.1, the
        original's, which has its own model code and needs --trust_remote_code. Or
        `judge`, where a chat model rates each response 1-5 and the score is the expected
        rating over its rating tokens' probabilities (magpie.judge; no reward model to
        download); records then name the judge in `rewards_model` (judge, then the model).
      reward_model: the same as --reward_model_path (give one of them).
      judge_model_path: the judge's chat model with --reward_model judge (hub id, folder,
        or the server's model with --engine openai); default the embedded
        SmolLM2-135M-Instruct. Given alone, it asks for the judge.
      batch_size: most responses per forward pass (batches are sorted by length).
      max_length: longest input in tokens; longer ones are truncated and counted.
      device: torch device; default CUDA when present.
      dtype: bfloat16, float16 or float32.
      trust_remote_code: allow the reward (or judge) model's own code (off unless asked).
      engine: the judge's engine: hf, vllm or openai; default vllm with a GPU, else hf.
        A reward model always runs in torch.
      base_url: the judge's OpenAI-compatible server with --engine openai (its
        completions must return logprobs).
      api_key_env: environment variable holding that server's API key (never printed).
      max_concurrency: requests in flight at once with --engine openai.
      tensor_parallel_size: GPUs per judge model with --engine vllm.
      gpu_memory_utilization: share of GPU memory vLLM may take (the judge).
      max_model_len: the judge's context length with --engine vllm.
      output_file: default <input stem>_armorm.json next to the input.
      checkpoint_every: kept for compatibility; every record is journaled as it is scored.
      overwrite: replace an output made with other settings or another input (a
        rerun with the same ones finds it complete; a mismatch is refused without this).
      executor: local (this process) or ray (replicas of the reward model on a Ray
        cluster; the same scores as local).
      ray_address: an existing Ray cluster for --executor ray (auto, or
        the Ray client address of a remote cluster); default a local one started for this run.
      num_replicas: reward-model replicas with --executor ray.
      gpus_per_replica: GPUs per replica with --executor ray; default 1 when the cluster
        has GPUs, else 0.
      cpus_per_replica: CPUs Ray reserves per replica (its torch threads on CPU).
    """
    del checkpoint_every
    if not input_file:
        raise InputError("--input_file is required")
    if reward_model and reward_model_path and reward_model != reward_model_path:
        raise InputError(
            f"--reward_model {reward_model} and --reward_model_path {reward_model_path} name "
            "two scorers; give one"
        )
    name = reward_model or reward_model_path
    if name is None:
        name = JUDGE if judge_model_path is not None else DEFAULT_REWARD_MODEL
    judged = is_judge(name)
    if judge_model_path is not None and not judged:
        raise InputError(
            f"--judge_model_path goes with --reward_model judge, not with the reward model {name}"
        )
    options = EngineOptions(
        engine=engine if judged else "hf",  # a reward model runs in torch, as hf does
        device=torch_device(device),
        dtype=dtype,
        batch_size=batch_size,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        trust_remote_code=trust_remote_code,
        base_url=base_url,
        api_key_env=api_key_env,
        max_concurrency=max_concurrency,
        executor=executor,
        ray_address=ray_address,
        num_replicas=num_replicas,
        gpus_per_replica=gpus_per_replica,
        cpus_per_replica=cpus_per_replica,
    )
    judge_path = judge_model_of(name, judge_model_path) if judged else None
    output = Path(output_file) if output_file else reward_file_name(input_file)
    with overwriting(overwrite):
        job = RewardJob(
            input_file,
            output,
            reward_model=judge_name(judge_path) if judged else name,
            max_length=max_length,
            dtype=dtype,
        )
    if already_complete("gen_po_rewards", job.journal, output):
        return
    # Refused here, before any replica starts: a loader failing on every replica is no
    # crash to retry.
    if judged:
        check_judge(judge_path, options)
        load = functools.partial(
            load_scorer,
            JUDGE,
            judge_model_path=judge_path,
            engine_options=options,
            max_length=max_length,
        )
    else:
        from magpie.tagging.reward import check_reward_model

        check_reward_model(name, trust_remote_code)
        load = functools.partial(
            load_scorer,
            name,
            device=torch_device(device),
            dtype=dtype,
            batch_size=batch_size,
            max_length=max_length,
            trust_remote_code=trust_remote_code,
        )
    runner = options.make_executor()
    try:
        summary = runner.run(job, load)
    finally:
        runner.close()
    print(summary.line())
    print(f"[gen_po_rewards] wrote {output}")


def cli() -> None:
    """The `magpie-gen-po-rewards` command."""
    run_cli(main, stage="gen_po_rewards")


if __name__ == "__main__":
    cli()
