"""Tagging: difficulty, quality, sample_quality, classification, safety, reward, language
(the original's unitag.py; groups `all` and `magpie` run several missions in one go)."""

from __future__ import annotations

from magpie.engines import EngineOptions, with_engine_flags
from magpie.records import InputError
from magpie.stage import run_cli
from magpie.tagging.job import TagOptions, run


@with_engine_flags
def main(
    input_file: str | None = None,
    tag_mission: str = "quality",
    model_path: str = "",
    guard_model_path: str | None = None,
    reward_model_path: str | None = None,
    checkpoint_every: int = 40,
    save_as: str = "json",
    max_tokens: int = 1024,
    temperature: float = 0.0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    seed: int | None = None,
    overwrite: bool = False,
    *,
    engine_options: EngineOptions,
):
    """Tag every record of INPUT_FILE (.json or .jsonl) for TAG_MISSION.

    Writes <input stem>_<suffix>.<save_as> next to the input (suffixes _difficulty,
    _quality, _sample_quality, _category, _safety, _reward, _language); a group chains
    them. Records may be Magpie records (instruction/response, instruction_k/response_k),
    input/output, messages or conversation lists of {role, content}, or ShareGPT
    conversations of {from, value}. The engine flags below also set the reward model's
    device, dtype, rows per batch (--batch_size) and context (--max_model_len: inputs
    are truncated to it and to the model's own limit); with --executor ray every mission
    runs on replicas of its model.

    Args:
      input_file: the records to tag.
      tag_mission: difficulty, quality, sample_quality, classification, safety, reward,
        language, or a group, all (every mission, the original's order) or magpie
        (quality, sample_quality, difficulty).
      model_path: the tagger LLM (hub id or folder); empty = the embedded SmolLM2-135M.
      guard_model_path: a Llama-Guard-family model for safety; without one the tagger
        LLM judges safety with this project's taxonomy prompt.
      reward_model_path: a sequence-classification reward model (single logit), needed
        by the reward mission (a group without one skips reward).
      checkpoint_every: kept for compatibility; every record is journaled as it is made.
      save_as: json or jsonl.
      max_tokens: most tokens per tagger answer.
      temperature: tagger sampling temperature; 0 = greedy (the original's).
      top_p: nucleus sampling threshold.
      repetition_penalty: CTRL-style penalty on tokens already present.
      seed: random seed for sampling.
      overwrite: replace outputs made with other settings or another input (a rerun
        with the same ones skips them; a mismatch is refused without this).
    """
    if not input_file:
        raise InputError("--input_file is required")
    opts = TagOptions(
        model_path=model_path or "",
        guard_model_path=guard_model_path or None,
        reward_model_path=reward_model_path or None,
        save_as=save_as,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
        overwrite=overwrite,
        engine_options=engine_options,
    )
    outputs = run(str(tag_mission), input_file, opts)
    print(f"[unitag] final output: {outputs[-1]}")


def cli() -> None:
    """The `magpie-unitag` command."""
    run_cli(main, stage="unitag")


if __name__ == "__main__":
    cli()
