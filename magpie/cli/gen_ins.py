"""Stage 1: extract instructions with the pre-query template (the original's gen_ins.py)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from magpie.engines import EngineOptions, with_engine_flags
from magpie.instructions import InstructionJob, instruction_file_name
from magpie.logits import first_token_processor
from magpie.models import canonical_name
from magpie.profiles import CONTROL_TASKS, get_profile
from magpie.records import InputError, overwriting
from magpie.stage import already_complete, run_cli

log = logging.getLogger("magpie")


@with_engine_flags
def main(
    model_path: str = "",
    total_prompts: int = 1000,
    n: int = 200,
    repeat: int | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    early_stopping: bool = True,
    disable_early_stopping: bool = False,
    system_prompt: bool | str = False,
    control_tasks: str | None = None,
    sanitize: bool = False,
    logits_processor: bool = False,
    flaming_tokens: bool = False,
    shuffle: bool = True,
    seed: int | None = None,
    checkpoint_every: int = 100,
    output_folder: str = "data",
    job_name: str | None = None,
    timestamp: int | None = None,
    overwrite: bool = False,
    *,
    engine_options: EngineOptions,
):
    """Generate Magpie instructions.

    Args:
      model_path: hub id or local folder of an aligned chat model; empty = the embedded
        SmolLM2-135M-Instruct.
      total_prompts: exactly this many instruction records are written.
      n: samples per pre-query prompt (one request with n samples).
      repeat: number of rounds of n; only used when total_prompts is 0 (total = repeat*n).
      temperature: sampling temperature for instructions.
      top_p: nucleus sampling threshold.
      max_tokens: most tokens per instruction; longer ones are flagged "unfinished".
      early_stopping: stop at the first newline (single-line instructions).
      disable_early_stopping: same as --early_stopping=False.
      system_prompt: True: use the model's with-system-prompt template; a string: use it
        as the system prompt.
      control_tasks: math, code or translation: steer with the task's system prompt.
      sanitize: clean instructions (prefixes, answer leaks) and record the rule class.
      logits_processor: forbid a markdown header as the first token.
      flaming_tokens: a hotter first token (logits / 1.2); not with --logits_processor.
      shuffle: shuffle the n samples of each prompt (seeded).
      seed: random seed; default the timestamp. Recorded in gen_input_configs.seed.
      checkpoint_every: kept for compatibility; every record is journaled as it is made.
      output_folder: where outputs go (created).
      job_name: subfolder of output_folder for this job.
      timestamp: used in the output file name; default now. Pass the same one to resume.
      overwrite: replace an output made with other settings or another input (a
        rerun with the same ones finds it complete; a mismatch is refused without this).
    """
    processor = first_token_processor(logits_processor, flaming_tokens)
    if control_tasks is not None and control_tasks not in CONTROL_TASKS:
        raise InputError(f"--control_tasks must be one of {', '.join(CONTROL_TASKS)}")
    if not total_prompts:
        if not repeat:
            raise InputError("give --total_prompts, or --repeat with --n")
        total_prompts = repeat * n
    timestamp = int(timestamp if timestamp is not None else time.time())
    seed = int(seed if seed is not None else timestamp)
    name = canonical_name(model_path)
    folder = Path(output_folder) / job_name if job_name else Path(output_folder)
    output = folder / instruction_file_name(name, total_prompts, timestamp)
    tokenizer = engine_options.tokenizer(model_path)
    profile = get_profile(name, tokenizer)
    log.info("model %s, profile from %s", name, profile.source)
    with overwriting(overwrite):
        job = InstructionJob(
            profile,
            output,
            model_name=name,
            total_prompts=total_prompts,
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            early_stopping=early_stopping and not disable_early_stopping,
            system_prompt=system_prompt,
            control_tasks=control_tasks,
            sanitize=sanitize,
            logits_processor=processor,
            shuffle=shuffle,
            seed=seed,
        )
    if already_complete("gen_ins", job.journal, output):
        return
    summary = engine_options.run(
        job, model_path, seed=seed, tokenizer=tokenizer, logits_processors=processor is not None
    )
    print(summary.line())
    print(f"[gen_ins] wrote {output}")


def cli() -> None:
    """The `magpie-gen-ins` command."""
    run_cli(main, stage="gen_ins")


if __name__ == "__main__":
    cli()
