"""Stage 1: extract instructions with the pre-query template (the original's gen_ins.py)."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import ClassVar

from magpie.engines import EngineOptions
from magpie.instructions import InstructionJob, instruction_file_name
from magpie.logits import first_token_processor
from magpie.models import canonical_name, is_default_model
from magpie.profiles import CONTROL_TASKS, get_profile
from magpie.records import InputError, overwriting, saved_as
from magpie.settings import SAVE_AS_HELP, Settings, command, console, flag
from magpie.stage import already_complete

log = logging.getLogger("magpie")

MODEL_PATH_HELP = (
    "hub id or local folder of an aligned chat model; empty = the embedded SmolLM2-135M-Instruct."
)
OVERWRITE_HELP = (
    "replace an output made with other settings or another input (a rerun with the same "
    "ones finds it complete; a mismatch is refused without this)."
)


@dataclasses.dataclass
class GenIns(Settings):
    """Generate Magpie instructions: the model writes the user turn after the pre-query
    template. Writes <output_folder>/<job_name>/Magpie_<model>_<total>_<timestamp>_ins.json."""

    stage = "gen_ins"
    uses_engine = True
    input_field = None

    # The original's defaults, and the embedded model's: a laptop-sized job, and top_p
    # 0.9 (at top_p 1 a third of a 135M model's samples ramble past the user turn).
    original_defaults: ClassVar[dict] = {"total_prompts": 1000, "top_p": 1.0, "max_tokens": 2048}
    embedded_defaults: ClassVar[dict] = {"total_prompts": 32, "top_p": 0.9, "max_tokens": 256}

    model_path: str = flag("", MODEL_PATH_HELP)
    total_prompts: int | None = flag(
        None,
        "exactly this many instruction records are written. Default 1000, 32 on the "
        "embedded model.",
    )
    n: int = flag(200, "samples per pre-query prompt (one request with n samples).")
    repeat: int | None = flag(
        None, "number of rounds of n; only used when total_prompts is 0 (total = repeat*n)."
    )
    temperature: float = flag(1.0, "sampling temperature for instructions.")
    top_p: float | None = flag(
        None, "nucleus sampling threshold; default 1, 0.9 on the embedded model."
    )
    max_tokens: int | None = flag(
        None,
        'most tokens per instruction; longer ones are flagged "unfinished". Default '
        "2048, 256 on the embedded model.",
    )
    early_stopping: bool = flag(True, "stop at the first newline (single-line instructions).")
    disable_early_stopping: bool = flag(False, "same as --early_stopping=False.")
    system_prompt: bool | str = flag(
        False,
        "True: use the model's with-system-prompt template; a string: use it as the system prompt.",
    )
    control_tasks: str | None = flag(
        None, "math, code or translation: steer with the task's system prompt."
    )
    sanitize: bool = flag(
        False, "clean instructions (prefixes, answer leaks) and record the rule class."
    )
    logits_processor: bool = flag(False, "forbid a markdown header as the first token.")
    flaming_tokens: bool = flag(
        False, "a hotter first token (logits / 1.2); not with --logits_processor."
    )
    shuffle: bool = flag(True, "shuffle the n samples of each prompt (seeded).")
    seed: int | None = flag(
        None, "random seed; default the timestamp. Recorded in gen_input_configs.seed."
    )
    checkpoint_every: int = flag(
        100, "kept for compatibility; every record is journaled as it is made."
    )
    output_folder: str = flag("data", "where outputs go (created).")
    job_name: str | None = flag(None, "subfolder of output_folder for this job.")
    timestamp: int | None = flag(
        None, "used in the output file name; default now. Pass the same one to resume."
    )
    save_as: str = flag("json", SAVE_AS_HELP)
    overwrite: bool = flag(False, OVERWRITE_HELP)

    def sampling(self) -> dict:
        """total_prompts, top_p, max_tokens and temperature with their defaults resolved:
        as given, else the embedded model's on the embedded model, else the original's."""
        defaults = (
            self.embedded_defaults if is_default_model(self.model_path) else self.original_defaults
        )
        resolved = {
            k: defaults[k] if getattr(self, k) is None else getattr(self, k) for k in defaults
        }
        return {**resolved, "temperature": self.temperature}

    def run(self, engine: EngineOptions | None = None) -> Path:
        engine = engine or EngineOptions()
        sampling = self.sampling()
        processor = first_token_processor(self.logits_processor, self.flaming_tokens)
        if self.control_tasks is not None and self.control_tasks not in CONTROL_TASKS:
            raise InputError(f"--control_tasks must be one of {', '.join(CONTROL_TASKS)}")
        total_prompts = sampling["total_prompts"]
        if not total_prompts:
            if not self.repeat:
                raise InputError("give --total_prompts, or --repeat with --n")
            total_prompts = self.repeat * self.n
        timestamp = int(self.timestamp if self.timestamp is not None else time.time())
        seed = int(self.seed if self.seed is not None else timestamp)
        name = canonical_name(self.model_path)
        folder = Path(self.output_folder)
        folder = folder / self.job_name if self.job_name else folder
        output = saved_as(
            folder / instruction_file_name(name, total_prompts, timestamp), self.save_as
        )
        tokenizer = engine.tokenizer(self.model_path)
        profile = get_profile(name, tokenizer)
        log.info("model %s, profile from %s", name, profile.source)
        with overwriting(self.overwrite):
            job = InstructionJob(
                profile,
                output,
                model_name=name,
                total_prompts=total_prompts,
                n=self.n,
                temperature=self.temperature,
                top_p=sampling["top_p"],
                max_tokens=sampling["max_tokens"],
                early_stopping=self.early_stopping and not self.disable_early_stopping,
                system_prompt=self.system_prompt,
                control_tasks=self.control_tasks,
                sanitize=self.sanitize,
                logits_processor=processor,
                shuffle=self.shuffle,
                seed=seed,
            )
        if already_complete(self.stage, job.journal, output):
            return output
        summary = engine.run(
            job,
            self.model_path,
            seed=seed,
            tokenizer=tokenizer,
            logits_processors=processor is not None,
        )
        print(summary.line())
        print(f"[{self.stage}] wrote {output}")
        return output


main, cli = command(GenIns), console(GenIns)

if __name__ == "__main__":
    cli()
