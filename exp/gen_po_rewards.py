"""Preference data, step 2: score every response with a reward model (gen_po_rewards.py)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magpie.compat import torch_device  # noqa: E402
from magpie.engines import EngineOptions  # noqa: E402
from magpie.preference import RewardJob, load_scorer, reward_file_name  # noqa: E402
from magpie.records import InputError, overwriting  # noqa: E402
from magpie.stage import already_complete, run_cli  # noqa: E402


def main(
    input_file: str | None = None,
    reward_model_path: str = "RLHFlow/ArmoRM-Llama3-8B-v0.1",
    batch_size: int = 16,
    max_length: int = 4096,
    device: str | None = None,
    dtype: str = "bfloat16",
    trust_remote_code: bool = False,
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
        head (hub id or local folder). The original's RLHFlow/ArmoRM-Llama3-8B-v0.1 has
        its own model code and needs --trust_remote_code.
      batch_size: most responses per forward pass (batches are sorted by length).
      max_length: longest input in tokens; longer ones are truncated and counted.
      device: torch device; default CUDA when present.
      dtype: bfloat16, float16 or float32.
      trust_remote_code: allow the reward model's own code (off unless asked).
      output_file: default <input stem>_armorm.json next to the input.
      checkpoint_every: kept for compatibility; every record is journaled as it is scored.
      overwrite: replace an output made with other settings or another input (a
        rerun with the same ones finds it complete; a mismatch is refused without this).
      executor: local (this process) or ray (replicas of the reward model on a Ray
        cluster; the same scores as local).
      ray_address: an existing Ray cluster for --executor ray (e.g. auto or
        ray://head:10001); default a local one started for this run.
      num_replicas: reward-model replicas with --executor ray.
      gpus_per_replica: GPUs per replica with --executor ray; default 1 when the cluster
        has GPUs, else 0.
      cpus_per_replica: CPUs Ray reserves per replica (its torch threads on CPU).
    """
    del checkpoint_every
    if not input_file:
        raise InputError("--input_file is required")
    output = Path(output_file) if output_file else reward_file_name(input_file)
    with overwriting(overwrite):
        job = RewardJob(
            input_file, output, reward_model=reward_model_path, max_length=max_length, dtype=dtype
        )
    if already_complete("gen_po_rewards", job.journal, output):
        return
    from magpie.tagging.reward import check_reward_model

    # Refused here, before any replica starts: a loader failing on every replica is no
    # crash to retry.
    check_reward_model(reward_model_path, trust_remote_code)
    runner = EngineOptions(
        engine="hf",  # the reward model runs in torch, as the hf engine does
        executor=executor,
        ray_address=ray_address,
        num_replicas=num_replicas,
        gpus_per_replica=gpus_per_replica,
        cpus_per_replica=cpus_per_replica,
    ).make_executor()
    load = functools.partial(
        load_scorer,
        reward_model_path,
        device=torch_device(device),
        dtype=dtype,
        batch_size=batch_size,
        max_length=max_length,
        trust_remote_code=trust_remote_code,
    )
    try:
        summary = runner.run(job, load)
    finally:
        runner.close()
    print(summary.line())
    print(f"[gen_po_rewards] wrote {output}")


if __name__ == "__main__":
    run_cli(main)
