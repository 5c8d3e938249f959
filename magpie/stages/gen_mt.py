"""Stage 3 (optional): extend single-turn records to N turns (the original's gen_mt.py),
and its twin, one-pass steered conversations (distilabel-style Magpie options) in a stage
of its own (gen_conv).

gen_ins.py keeps the original's meaning (instructions only, one pre-query template);
gen_conv writes whole conversations, with system-prompt steering.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import ClassVar

from magpie.engines import EngineOptions
from magpie.logits import first_token_processor
from magpie.models import canonical_name
from magpie.multiturn import ConversationJob, MultiTurnJob
from magpie.profiles import get_profile
from magpie.records import InputError, iter_records, overwriting, saved_as
from magpie.responses import (
    response_file_name,
    response_settings,
    used_penalties,
)
from magpie.settings import SAVE_AS_HELP, Settings, command, console, flag
from magpie.stage import already_complete
from magpie.stages.gen_ins import OVERWRITE_HELP
from magpie.turns import MULTI_TURN_SYSTEM_PROMPT, parse_system_prompts

MODEL_PATH_HELP = "hub id or local folder; empty = the embedded SmolLM2-135M-Instruct."


@dataclasses.dataclass
class Dialogues(Settings):
    """What gen_mt and gen_conv share: user turns sampled with the instruction_* flags,
    assistant turns with the response_* flags (their defaults resolved by `sampling`),
    one job run on the engine."""

    uses_engine = True
    # The original's response defaults; the embedded model's are EMBEDDED_RESPONSE_DEFAULTS
    # (magpie/responses.py): greedy answers of a 135M model loop.
    original_defaults: ClassVar[dict] = {
        "temperature": 0.0,
        "top_p": 1.0,
        "frequency_penalty": 0.0,
        "max_tokens": 4096,
    }
    job_class: ClassVar[type]

    model_path: str = flag("", MODEL_PATH_HELP)
    save_as: str = flag("json", SAVE_AS_HELP)
    instruction_temperature: float = flag(1.0, "sampling temperature for user turns.")
    instruction_top_p: float = flag(1.0, "nucleus threshold for user turns.")
    instruction_repetition_penalty: float = flag(1.0, "repetition penalty for user turns.")
    response_temperature: float | None = flag(
        None,
        "sampling temperature for assistant turns (0 = greedy); default 0 (the original's), "
        "0.7 on the embedded model (EMBEDDED_RESPONSE_DEFAULTS in magpie/responses.py, "
        "since greedy answers of a 135M model loop).",
    )
    response_top_p: float | None = flag(
        None, "nucleus threshold for assistant turns; default 1, 0.9 on the embedded model."
    )
    response_repetition_penalty: float = flag(1.0, "repetition penalty for assistant turns.")
    response_frequency_penalty: float | None = flag(
        None,
        "OpenAI's penalty per occurrence of a token in the turn so far (not the prompt), "
        "in [-2, 2], for assistant turns; default 0, 0.3 on the embedded model.",
    )
    response_presence_penalty: float = flag(
        0.0,
        "OpenAI's penalty on any token already in the turn, in [-2, 2], for assistant turns.",
    )
    max_tokens: int | None = flag(
        None,
        "most tokens per turn; a turn that hits it ends its conversation. Default 4096 for "
        "gen_mt, 2048 for gen_conv, 512 on the embedded model.",
    )
    overwrite: bool = flag(False, OVERWRITE_HELP)

    def sampling(self) -> dict:
        """The response settings with their defaults resolved: as given, else the
        embedded model's measured ones on the embedded model, else the original's."""
        given = {
            "temperature": self.response_temperature,
            "top_p": self.response_top_p,
            "frequency_penalty": self.response_frequency_penalty,
            "max_tokens": self.max_tokens,
        }
        return response_settings(self.model_path, given, self.original_defaults)

    def instruction_params(self) -> dict:
        return {
            "temperature": self.instruction_temperature,
            "top_p": self.instruction_top_p,
            "repetition_penalty": self.instruction_repetition_penalty,
        }

    def prepare(self) -> tuple[Path, dict]:
        """Checked before any model loads: the output path and the job's own arguments."""
        raise NotImplementedError

    def run_options(self) -> dict:
        """The engine's own arguments for this job."""
        return {}

    def run(self, engine: EngineOptions | None = None) -> Path:
        engine = engine or EngineOptions()
        output, job_args = self.prepare()
        settings = self.sampling()
        name = canonical_name(self.model_path)
        tokenizer = engine.tokenizer(self.model_path)
        with overwriting(self.overwrite):
            job = self.job_class(
                get_profile(name, tokenizer),
                tokenizer,
                output_path=output,
                model_name=name,
                **job_args,
                instruction_params=self.instruction_params(),
                response_params={
                    "temperature": settings["temperature"],
                    "top_p": settings["top_p"],
                    "repetition_penalty": self.response_repetition_penalty,
                    **used_penalties(settings["frequency_penalty"], self.response_presence_penalty),
                },
                max_tokens=settings["max_tokens"],
                seed=self.seed,
            )
        if already_complete(self.stage, job.journal, output):
            return output
        summary = engine.run(
            job, self.model_path, seed=self.seed, tokenizer=tokenizer, **self.run_options()
        )
        print(summary.line())
        print(f"[{self.stage}] wrote {output}")
        return output


@dataclasses.dataclass
class GenMt(Dialogues):
    """Extend the conversations of INPUT_FILE to NUM_TURNS turns; records that already
    have turns are continued after their last complete exchange, never regenerated."""

    stage = "gen_mt"
    job_class = MultiTurnJob

    input_file: str | None = flag(
        None,
        "records with `instruction` and `response` (the output of gen_res.py), or any "
        "format magpie.conversation reads (flat `instruction_k`/`response_k`, "
        "`conversation`/`messages`, ShareGPT `conversations`).",
    )
    num_turns: int = flag(2, "total turns per conversation (at least 2).")
    early_stopping: bool = flag(True, "cut follow-up instructions at the first newline.")
    disable_early_stopping: bool = flag(False, "same as --early_stopping=False.")
    system_prompt: str = flag(
        MULTI_TURN_SYSTEM_PROMPT,
        "system prompt used when extracting follow-up instructions ('' for none); default "
        "the paper's multi-turn prompt with its typos fixed. Dropped (and logged) for chat "
        "templates without a system turn, such as Gemma's.",
    )
    seed: int | None = flag(None, "random seed.")
    checkpoint_every: int = flag(
        20, "kept for compatibility; every turn is journaled as it is made."
    )
    output_file: str | None = flag(None, "default <input stem>_mt.json next to the input.")

    def prepare(self) -> tuple[Path, dict]:
        if not self.input_file:
            raise InputError("--input_file is required")
        if self.output_file:
            output = Path(self.output_file)
        else:
            output = saved_as(response_file_name(self.input_file, "_mt"), self.save_as)
        # Malformed input fails before any model (or tokenizer) loads: one streaming pass.
        for _ in iter_records(self.input_file):
            pass
        return output, {
            "input_file": self.input_file,
            "num_turns": self.num_turns,
            "system_prompt": self.system_prompt,
            "early_stopping": self.early_stopping and not self.disable_early_stopping,
        }


@dataclasses.dataclass
class GenConv(Dialogues):
    """Generate conversations in one pass, steered by system prompts.

    Output columns: `instruction` (+ `response`) for one turn, `conversation` [{role,
    content}] for more, `instruction` only with --only_instruction; `system_prompt_key`
    when --system_prompt is a mapping; always `model_name` and `conversation_stop_reason`
    (null, or why a conversation ended early: an empty or unfinished turn)."""

    stage = "gen_conv"
    input_field = None
    job_class = ConversationJob
    original_defaults: ClassVar[dict] = {**Dialogues.original_defaults, "max_tokens": 2048}

    total_prompts: int = flag(100, "number of conversations (ignored with --input_file).")
    input_file: str | None = flag(
        None,
        "rows to extend, one conversation each; a `system_prompt` column overrides "
        "--system_prompt for its row.",
    )
    n_turns: int = flag(1, "user/assistant turn pairs per conversation.")
    end_with_user: bool = flag(False, "end each conversation with a user turn (no final reply).")
    include_system_prompt: bool = flag(False, "keep the system message in the output.")
    only_instruction: bool = flag(False, "generate the first user turn only (n_turns ignored).")
    system_prompt: str | list | dict | None = flag(
        None,
        "a string; a list (chosen uniformly per record); a mapping name -> prompt; a "
        "mapping name -> [prompt, weight]; or a .json/.yaml file holding one.",
    )
    logits_processor: bool = flag(
        False, "forbid a markdown header as the first token of a user turn."
    )
    flaming_tokens: bool = flag(
        False,
        "a hotter first token of a user turn (logits / 1.2); not with --logits_processor.",
    )
    early_stopping: bool = flag(True, "cut user turns at the first newline.")
    seed: int | None = flag(
        None, "random seed (system prompt choices and sampling); default the timestamp."
    )
    output_folder: str = flag("data", "where outputs go.")
    job_name: str | None = flag(None, "subfolder of output_folder.")
    timestamp: int | None = flag(None, "used in the output file name; pass the same one to resume.")

    def run(self, engine: EngineOptions | None = None) -> Path:
        timestamp = int(self.timestamp if self.timestamp is not None else time.time())
        seed = int(self.seed if self.seed is not None else timestamp)
        if (timestamp, seed) != (self.timestamp, self.seed):
            return dataclasses.replace(self, timestamp=timestamp, seed=seed).run(engine)
        return super().run(engine)

    def processor(self) -> str | None:
        return first_token_processor(self.logits_processor, self.flaming_tokens)

    def instruction_params(self) -> dict:
        return {**super().instruction_params(), "logits_processor": self.processor()}

    def run_options(self) -> dict:
        return {"logits_processors": self.processor() is not None}

    def prepare(self) -> tuple[Path, dict]:
        prompts = parse_system_prompts(self.system_prompt)
        self.processor()  # refuses --logits_processor with --flaming_tokens
        folder = Path(self.output_folder)
        if self.job_name:
            folder = folder / self.job_name
        count = "input" if self.input_file else self.total_prompts
        name = Path(canonical_name(self.model_path)).name
        output = saved_as(
            folder / f"Magpie_{name}_{count}_{self.timestamp}_conv.json", self.save_as
        )
        return output, {
            "total": self.total_prompts,
            "input_file": self.input_file,
            "n_turns": self.n_turns,
            "end_with_user": self.end_with_user,
            "include_system_prompt": self.include_system_prompt,
            "only_instruction": self.only_instruction,
            "system_prompts": prompts,
            "early_stopping": self.early_stopping,
        }


main, cli = command(GenMt), console(GenMt)
main_conv, cli_conv = command(GenConv), console(GenConv)

if __name__ == "__main__":
    cli()
