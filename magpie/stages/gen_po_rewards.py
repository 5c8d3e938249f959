"""Preference data, step 2: score every response with a reward model, or with a chat model
as judge (gen_po_rewards.py)."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from magpie.compat import torch_device
from magpie.engines import EngineOptions
from magpie.judge import JUDGE, check_judge, is_judge, judge_model_of, judge_name
from magpie.preference import RewardJob, load_scorer, reward_file_name
from magpie.records import InputError, overwriting, saved_as
from magpie.settings import SAVE_AS_HELP, Settings, command, console, flag
from magpie.stage import already_complete

DEFAULT_REWARD_MODEL = "RLHFlow/ArmoRM-Llama3-8B-v0.1"


@dataclasses.dataclass
class GenPoRewards(Settings):
    """Add the scores ([{"score": s}] aligned with `responses`) and `rewards_model` to
    every record of INPUT_FILE (the output of gen_po_multi_res.py). The scores go to
    `rewards_armorm` when ArmoRM made them (the original's field), else to `rewards`."""

    stage = "gen_po_rewards"

    input_file: str | None = flag(None, "records with `instruction` and `responses`.")
    reward_model_path: str | None = flag(
        None,
        "any sequence-classification reward model with a single-logit head (hub id or "
        "local folder); default RLHFlow/ArmoRM-Llama3-8B-v0.1, the original's, which has "
        "its own model code and needs --trust_remote_code. Or `judge`, where a chat model "
        "rates each response 1-5 and the score is the expected rating over its rating "
        "tokens' probabilities (magpie.judge; no reward model to download); records then "
        "name the judge in `rewards_model` (judge, then the model).",
    )
    reward_model: str | None = flag(None, "the same as --reward_model_path (give one of them).")
    judge_model_path: str | None = flag(
        None,
        "the judge's chat model with --reward_model judge (hub id, folder, or the server's "
        "model with --engine openai); default the embedded SmolLM2-135M-Instruct. Given "
        "alone, it asks for the judge.",
    )
    batch_size: int = flag(16, "most responses per forward pass (batches are sorted by length).")
    max_length: int = flag(4096, "longest input in tokens; longer ones are truncated and counted.")
    device: str | None = flag(None, "torch device; default CUDA when present.")
    dtype: str = flag("bfloat16", "bfloat16, float16 or float32.")
    trust_remote_code: bool = flag(
        False, "allow the reward (or judge) model's own code (off unless asked)."
    )
    engine: str | None = flag(
        None,
        "the judge's engine: hf, vllm or openai; default vllm with a GPU, else hf. A "
        "reward model always runs in torch.",
    )
    base_url: str | None = flag(
        None,
        "the judge's OpenAI-compatible server with --engine openai (its completions must "
        "return logprobs).",
    )
    api_key_env: str = flag(
        "OPENAI_API_KEY",
        "environment variable holding that server's API key (never printed).",
    )
    max_concurrency: int = flag(8, "requests in flight at once with --engine openai.")
    tensor_parallel_size: int = flag(1, "GPUs per judge model with --engine vllm.")
    gpu_memory_utilization: float | None = flag(
        None, "share of GPU memory vLLM may take (the judge)."
    )
    max_model_len: int = flag(4096, "the judge's context length with --engine vllm.")
    output_file: str | None = flag(None, "default <input stem>_armorm.json next to the input.")
    save_as: str = flag("json", SAVE_AS_HELP)
    checkpoint_every: int = flag(
        5000, "kept for compatibility; every record is journaled as it is scored."
    )
    overwrite: bool = flag(
        False,
        "replace an output made with other settings or another input (a rerun with the "
        "same ones finds it complete; a mismatch is refused without this).",
    )
    executor: str = flag(
        "local",
        "local (this process) or ray (replicas of the reward model on a Ray cluster; the "
        "same scores as local).",
    )
    ray_address: str | None = flag(
        None,
        "an existing Ray cluster for --executor ray (auto, or the Ray client address of a "
        "remote cluster); default a local one started for this run.",
    )
    num_replicas: int = flag(1, "reward-model replicas with --executor ray.")
    gpus_per_replica: float | None = flag(
        None,
        "GPUs per replica with --executor ray; default 1 when the cluster has GPUs, else 0.",
    )
    cpus_per_replica: float = flag(1, "CPUs Ray reserves per replica (its torch threads on CPU).")

    def scorer(self) -> str:
        """The reward model's name, or the judge's (JUDGE...)."""
        if self.reward_model and self.reward_model_path:
            if self.reward_model != self.reward_model_path:
                raise InputError(
                    f"--reward_model {self.reward_model} and --reward_model_path "
                    f"{self.reward_model_path} name two scorers; give one"
                )
        name = self.reward_model or self.reward_model_path
        if name is None:
            name = JUDGE if self.judge_model_path is not None else DEFAULT_REWARD_MODEL
        if self.judge_model_path is not None and not is_judge(name):
            raise InputError(
                f"--judge_model_path goes with --reward_model judge, not with the reward "
                f"model {name}"
            )
        return name

    def engine_options(self, judged: bool) -> EngineOptions:
        return EngineOptions(
            engine=self.engine if judged else "hf",  # a reward model runs in torch, as hf does
            device=torch_device(self.device),
            dtype=self.dtype,
            batch_size=self.batch_size,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_model_len=self.max_model_len,
            trust_remote_code=self.trust_remote_code,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            max_concurrency=self.max_concurrency,
            executor=self.executor,
            ray_address=self.ray_address,
            num_replicas=self.num_replicas,
            gpus_per_replica=self.gpus_per_replica,
            cpus_per_replica=self.cpus_per_replica,
        )

    def run(self, engine: EngineOptions | None = None) -> Path:
        """Score; return the scored file. `engine` is unused: this stage's engine and
        executor flags are its own."""
        del engine
        if not self.input_file:
            raise InputError("--input_file is required")
        name = self.scorer()
        judged = is_judge(name)
        options = self.engine_options(judged)
        judge_path = judge_model_of(name, self.judge_model_path) if judged else None
        output = (
            Path(self.output_file)
            if self.output_file
            else saved_as(reward_file_name(self.input_file), self.save_as)
        )
        with overwriting(self.overwrite):
            job = RewardJob(
                self.input_file,
                output,
                reward_model=judge_name(judge_path) if judged else name,
                max_length=self.max_length,
                dtype=self.dtype,
            )
        if already_complete(self.stage, job.journal, output):
            return output
        # Refused here, before any replica starts: a loader failing on every replica is no
        # crash to retry.
        if judged:
            check_judge(judge_path, options)
            load = functools.partial(
                load_scorer,
                JUDGE,
                judge_model_path=judge_path,
                engine_options=options,
                max_length=self.max_length,
            )
        else:
            from magpie.tagging.reward import check_reward_model

            check_reward_model(name, self.trust_remote_code)
            load = functools.partial(
                load_scorer,
                name,
                device=torch_device(self.device),
                dtype=self.dtype,
                batch_size=self.batch_size,
                max_length=self.max_length,
                trust_remote_code=self.trust_remote_code,
            )
        runner = options.make_executor()
        try:
            summary = runner.run(job, load)
        finally:
            runner.close()
        print(summary.line())
        print(f"[{self.stage}] wrote {output}")
        return output


main, cli = command(GenPoRewards), console(GenPoRewards)

if __name__ == "__main__":
    cli()
