"""Stage 3 (optional): extend single-turn records to N turns (the original's gen_mt.py)."""

from __future__ import annotations

from pathlib import Path

from magpie.conversations import MULTI_TURN_SYSTEM_PROMPT
from magpie.engines import EngineOptions, with_engine_flags
from magpie.models import canonical_name
from magpie.multiturn import MultiTurnJob
from magpie.profiles import get_profile
from magpie.records import InputError, overwriting, read_records
from magpie.responses import response_file_name, response_settings, used_penalties
from magpie.stage import already_complete, run_cli


@with_engine_flags
def main(
    input_file: str | None = None,
    model_path: str = "",
    num_turns: int = 2,
    max_tokens: int | None = None,
    early_stopping: bool = True,
    disable_early_stopping: bool = False,
    instruction_temperature: float = 1.0,
    instruction_top_p: float = 1.0,
    instruction_repetition_penalty: float = 1.0,
    response_temperature: float | None = None,
    response_top_p: float | None = None,
    response_repetition_penalty: float = 1.0,
    response_frequency_penalty: float | None = None,
    response_presence_penalty: float = 0.0,
    system_prompt: str = MULTI_TURN_SYSTEM_PROMPT,
    seed: int | None = None,
    checkpoint_every: int = 20,
    output_file: str | None = None,
    overwrite: bool = False,
    *,
    engine_options: EngineOptions,
):
    """Extend the conversations of INPUT_FILE to NUM_TURNS turns; records that already
    have turns are continued after their last complete exchange, never regenerated.

    Args:
      input_file: records with `instruction` and `response` (the output of gen_res.py),
        or any format magpie.conversation reads (flat `instruction_k`/`response_k`,
        `conversation`/`messages`, ShareGPT `conversations`).
      model_path: hub id or local folder; empty = the embedded SmolLM2-135M-Instruct.
      num_turns: total turns per conversation (at least 2).
      max_tokens: most tokens per turn; a turn that hits it ends its conversation.
        Default 4096, 512 on the embedded model.
      early_stopping: cut follow-up instructions at the first newline.
      disable_early_stopping: same as --early_stopping=False.
      instruction_temperature: sampling temperature for follow-up instructions.
      instruction_top_p: nucleus threshold for follow-up instructions.
      instruction_repetition_penalty: repetition penalty for follow-up instructions.
      response_temperature: sampling temperature for responses (0 = greedy); default 0
        (the original's), 0.7 on the embedded model (EMBEDDED_RESPONSE_DEFAULTS in
        magpie/responses.py, since greedy answers of a 135M model loop).
      response_top_p: nucleus threshold for responses; default 1, 0.9 on the embedded model.
      response_repetition_penalty: repetition penalty for responses.
      response_frequency_penalty: OpenAI's penalty per occurrence of a token in the turn
        so far (not the prompt), in [-2, 2], for responses; default 0, 0.3 on the embedded
        model.
      response_presence_penalty: OpenAI's penalty on any token already in the turn, in
        [-2, 2], for responses.
      system_prompt: system prompt used when extracting follow-up instructions ('' for
        none); default the paper's multi-turn prompt with its typos fixed. Dropped (and
        logged) for chat templates without a system turn, such as Gemma's.
      seed: random seed.
      checkpoint_every: kept for compatibility; every turn is journaled as it is made.
      output_file: default <input stem>_mt.json next to the input.
      overwrite: replace an output made with other settings or another input (a
        rerun with the same ones finds it complete; a mismatch is refused without this).
    """
    if not input_file:
        raise InputError("--input_file is required")
    output = Path(output_file) if output_file else response_file_name(input_file, "_mt")
    read_records(input_file)  # bad input fails before any model loads
    settings = response_settings(
        model_path,
        {
            "temperature": response_temperature,
            "top_p": response_top_p,
            "frequency_penalty": response_frequency_penalty,
            "max_tokens": max_tokens,
        },
        {"temperature": 0.0, "top_p": 1.0, "frequency_penalty": 0.0, "max_tokens": 4096},
    )
    name = canonical_name(model_path)
    tokenizer = engine_options.tokenizer(model_path)
    with overwriting(overwrite):
        job = MultiTurnJob(
            get_profile(name, tokenizer),
            tokenizer,
            input_file,
            output,
            model_name=name,
            num_turns=num_turns,
            system_prompt=system_prompt,
            early_stopping=early_stopping and not disable_early_stopping,
            instruction_params={
                "temperature": instruction_temperature,
                "top_p": instruction_top_p,
                "repetition_penalty": instruction_repetition_penalty,
            },
            response_params={
                "temperature": settings["temperature"],
                "top_p": settings["top_p"],
                "repetition_penalty": response_repetition_penalty,
                **used_penalties(settings["frequency_penalty"], response_presence_penalty),
            },
            max_tokens=settings["max_tokens"],
            seed=seed,
        )
    if already_complete("gen_mt", job.journal, output):
        return
    summary = engine_options.run(job, model_path, tokenizer=tokenizer, seed=seed)
    print(summary.line())
    print(f"[gen_mt] wrote {output}")


def cli() -> None:
    """The `magpie-gen-mt` command."""
    run_cli(main, stage="gen_mt")


if __name__ == "__main__":
    cli()
