"""One-pass steered conversations (distilabel-style Magpie options) in a stage of its own.

gen_ins.py keeps the original's meaning (instructions only, one pre-query template);
this stage writes whole conversations, with system-prompt steering.
"""

from __future__ import annotations

import time
from pathlib import Path

from magpie.conversations import parse_system_prompts
from magpie.engines import EngineOptions, with_engine_flags
from magpie.logits import first_token_processor
from magpie.models import canonical_name
from magpie.multiturn import ConversationJob
from magpie.profiles import get_profile
from magpie.records import overwriting
from magpie.responses import response_settings, used_penalties
from magpie.stage import already_complete, run_cli


@with_engine_flags
def main(
    model_path: str = "",
    total_prompts: int = 100,
    input_file: str | None = None,
    n_turns: int = 1,
    end_with_user: bool = False,
    include_system_prompt: bool = False,
    only_instruction: bool = False,
    system_prompt=None,
    instruction_temperature: float = 1.0,
    instruction_top_p: float = 1.0,
    instruction_repetition_penalty: float = 1.0,
    logits_processor: bool = False,
    flaming_tokens: bool = False,
    response_temperature: float | None = None,
    response_top_p: float | None = None,
    response_repetition_penalty: float = 1.0,
    response_frequency_penalty: float | None = None,
    response_presence_penalty: float = 0.0,
    max_tokens: int | None = None,
    early_stopping: bool = True,
    seed: int | None = None,
    output_folder: str = "data",
    job_name: str | None = None,
    timestamp: int | None = None,
    overwrite: bool = False,
    *,
    engine_options: EngineOptions,
):
    """Generate conversations in one pass, steered by system prompts.

    Output columns: `instruction` (+ `response`) for one turn, `conversation` [{role,
    content}] for more, `instruction` only with --only_instruction; `system_prompt_key`
    when --system_prompt is a mapping; always `model_name` and `conversation_stop_reason`
    (null, or why a conversation ended early: an empty or unfinished turn).

    Args:
      model_path: hub id or local folder; empty = the embedded SmolLM2-135M-Instruct.
      total_prompts: number of conversations (ignored with --input_file).
      input_file: rows to extend, one conversation each; a `system_prompt` column
        overrides --system_prompt for its row.
      n_turns: user/assistant turn pairs per conversation.
      end_with_user: end each conversation with a user turn (no final reply).
      include_system_prompt: keep the system message in the output.
      only_instruction: generate the first user turn only (n_turns ignored).
      system_prompt: a string; a list (chosen uniformly per record); a mapping name ->
        prompt; a mapping name -> [prompt, weight]; or a .json/.yaml file holding one.
      instruction_temperature: sampling temperature for user turns.
      instruction_top_p: nucleus threshold for user turns.
      instruction_repetition_penalty: repetition penalty for user turns.
      logits_processor: forbid a markdown header as the first token of a user turn.
      flaming_tokens: a hotter first token of a user turn (logits / 1.2); not with
        --logits_processor.
      response_temperature: sampling temperature for assistant turns (0 = greedy); default 0
        (the original's), 0.7 on the embedded model (EMBEDDED_RESPONSE_DEFAULTS in
        magpie/responses.py, since greedy answers of a 135M model loop).
      response_top_p: nucleus threshold for assistant turns; default 1, 0.9 on the embedded model.
      response_repetition_penalty: repetition penalty for assistant turns.
      response_frequency_penalty: OpenAI's penalty per occurrence of a token in the turn
        so far (not the prompt), in [-2, 2], for assistant turns; default 0, 0.3 on the embedded
        model.
      response_presence_penalty: OpenAI's penalty on any token already in the turn, in
        [-2, 2], for assistant turns.
      max_tokens: most tokens per turn; a turn that hits it ends its conversation.
        Default 2048, 512 on the embedded model.
      early_stopping: cut user turns at the first newline.
      seed: random seed (system prompt choices and sampling); default the timestamp.
      output_folder: where outputs go.
      job_name: subfolder of output_folder.
      timestamp: used in the output file name; pass the same one to resume.
      overwrite: replace an output made with other settings or another input (a
        rerun with the same ones finds it complete; a mismatch is refused without this).
    """
    timestamp = int(timestamp if timestamp is not None else time.time())
    seed = int(seed if seed is not None else timestamp)
    prompts = parse_system_prompts(system_prompt)
    processor = first_token_processor(logits_processor, flaming_tokens)
    settings = response_settings(
        model_path,
        {
            "temperature": response_temperature,
            "top_p": response_top_p,
            "frequency_penalty": response_frequency_penalty,
            "max_tokens": max_tokens,
        },
        {"temperature": 0.0, "top_p": 1.0, "frequency_penalty": 0.0, "max_tokens": 2048},
    )
    name = canonical_name(model_path)
    folder = Path(output_folder) / job_name if job_name else Path(output_folder)
    count = "input" if input_file else total_prompts
    output = folder / f"Magpie_{Path(name).name}_{count}_{timestamp}_conv.json"
    tokenizer = engine_options.tokenizer(model_path)
    with overwriting(overwrite):
        job = ConversationJob(
            get_profile(name, tokenizer),
            tokenizer,
            output,
            model_name=name,
            total=total_prompts,
            input_file=input_file,
            n_turns=n_turns,
            end_with_user=end_with_user,
            include_system_prompt=include_system_prompt,
            only_instruction=only_instruction,
            system_prompts=prompts,
            early_stopping=early_stopping,
            instruction_params={
                "temperature": instruction_temperature,
                "top_p": instruction_top_p,
                "repetition_penalty": instruction_repetition_penalty,
                "logits_processor": processor,
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
    if already_complete("gen_conv", job.journal, output):
        return
    summary = engine_options.run(
        job, model_path, seed=seed, tokenizer=tokenizer, logits_processors=processor is not None
    )
    print(summary.line())
    print(f"[gen_conv] wrote {output}")


def cli() -> None:
    """The `magpie-gen-conv` command."""
    run_cli(main, stage="gen_conv")


if __name__ == "__main__":
    cli()
