"""Stage 2: answer each instruction with the same model (the original's gen_res.py)."""

from __future__ import annotations

import logging
from pathlib import Path

from magpie.engines import EngineOptions, with_engine_flags
from magpie.models import canonical_name
from magpie.profiles import get_profile
from magpie.records import InputError, overwriting, read_records
from magpie.responses import ResponseJob, response_file_name, response_settings
from magpie.stage import already_complete, run_cli

log = logging.getLogger("magpie")


@with_engine_flags
def main(
    input_file: str | None = None,
    model_path: str = "",
    temperature: float | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    frequency_penalty: float | None = None,
    presence_penalty: float = 0.0,
    max_tokens: int | None = None,
    seed: int | None = None,
    checkpoint_every: int = 20,
    response_mode: str | None = None,
    enable_thinking: bool | None = None,
    output_file: str | None = None,
    overwrite: bool = False,
    *,
    engine_options: EngineOptions,
):
    """Generate a response for every instruction of INPUT_FILE (.json or .jsonl).

    Args:
      input_file: records with an `instruction` field (the output of gen_ins.py), or
        conversations (`conversations`, `messages`, `conversation`, `input`) ending on a
        user turn, which get the answer as their next assistant turn.
      model_path: hub id or local folder; empty = the embedded SmolLM2-135M-Instruct.
      temperature: sampling temperature; 0 = greedy. Default 0 (the original's), 0.7 on
        the embedded model (EMBEDDED_RESPONSE_DEFAULTS in magpie/responses.py, since
        greedy answers of a 135M model loop).
      top_p: nucleus sampling threshold; default 1, 0.9 on the embedded model.
      repetition_penalty: CTRL-style penalty on tokens already present.
      frequency_penalty: OpenAI's penalty per occurrence of a token in the response so far
        (not the prompt), in [-2, 2]; default 0, 0.3 on the embedded model.
      presence_penalty: OpenAI's penalty on any token already in the response, in [-2, 2].
      max_tokens: most tokens per response; longer ones are flagged "unfinished". Default
        4096, 512 on the embedded model.
      seed: random seed for sampling.
      checkpoint_every: kept for compatibility; every record is journaled as it is made.
      response_mode: with --engine openai: template (default; raw completion of the chat
        template rendered here) or chat (the server's chat endpoint applies its template).
      enable_thinking: passed to the chat template (Qwen3's switch): False renders it
        without thinking; default the template's own choice. A thinking model's thoughts
        go to `reasoning`, its answer to `response`.
      output_file: default <input stem>_res.json next to the input.
      overwrite: replace an output made with other settings or another input (a
        rerun with the same ones finds it complete; a mismatch is refused without this).
    """
    if not input_file:
        raise InputError("--input_file is required")
    output = Path(output_file) if output_file else response_file_name(input_file)
    read_records(input_file)  # bad input fails before any model loads
    settings = response_settings(
        model_path,
        {
            "temperature": temperature,
            "top_p": top_p,
            "frequency_penalty": frequency_penalty,
            "max_tokens": max_tokens,
        },
        {"temperature": 0.0, "top_p": 1.0, "frequency_penalty": 0.0, "max_tokens": 4096},
    )
    name = canonical_name(model_path)
    tokenizer = engine_options.tokenizer(model_path)
    with overwriting(overwrite):
        job = ResponseJob(
            get_profile(name, tokenizer),
            input_file,
            output,
            model_name=name,
            repetition_penalty=repetition_penalty,
            presence_penalty=presence_penalty,
            **settings,
            seed=seed,
            enable_thinking=enable_thinking,
        )
    if already_complete("gen_res", job.journal, output):
        return
    summary = engine_options.run(
        job, model_path, seed=seed, tokenizer=tokenizer, response_mode=response_mode
    )
    print(summary.line())
    print(f"[gen_res] wrote {output}")


def cli() -> None:
    """The `magpie-gen-res` command."""
    run_cli(main, stage="gen_res")


if __name__ == "__main__":
    cli()
