"""Tagging: difficulty, quality, sample_quality, classification, safety, reward, language
(the original's unitag.py; groups `all` and `magpie` run several missions in one go)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from magpie.engines import EngineOptions
from magpie.records import InputError
from magpie.settings import SAVE_AS_HELP, Settings, command, console, flag
from magpie.tagging.job import TagOptions
from magpie.tagging.job import run as run_missions


@dataclasses.dataclass
class Unitag(Settings):
    """Tag every record of INPUT_FILE (.json or .jsonl) for TAG_MISSION.

    Writes <input stem>_<suffix>.<save_as> next to the input (suffixes _difficulty,
    _quality, _sample_quality, _category, _safety, _reward, _language); a group chains
    them. Records may be Magpie records (instruction/response, instruction_k/response_k),
    input/output, messages or conversation lists of {role, content}, or ShareGPT
    conversations of {from, value}. The engine flags below also set the reward model's
    device, dtype, rows per batch (--batch_size) and context (--max_model_len: inputs
    are truncated to it and to the model's own limit); with --executor ray every mission
    runs on replicas of its model."""

    stage = "unitag"
    uses_engine = True

    input_file: str | None = flag(None, "the records to tag.")
    tag_mission: str = flag(
        "quality",
        "difficulty, quality, sample_quality, classification, safety, reward, language, "
        "or a group, all (every mission, the original's order) or magpie (quality, "
        "sample_quality, difficulty).",
    )
    model_path: str = flag(
        "", "the tagger LLM (hub id or folder); empty = the embedded SmolLM2-135M."
    )
    guard_model_path: str | None = flag(
        None,
        "a Llama-Guard-family model for safety; without one the tagger LLM judges safety "
        "with this project's taxonomy prompt.",
    )
    reward_model_path: str | None = flag(
        None,
        "a sequence-classification reward model (single logit), needed by the reward "
        "mission (a group without one skips reward).",
    )
    checkpoint_every: int = flag(
        40, "kept for compatibility; every record is journaled as it is made."
    )
    save_as: str = flag("json", SAVE_AS_HELP)
    max_tokens: int = flag(1024, "most tokens per tagger answer.")
    temperature: float = flag(0.0, "tagger sampling temperature; 0 = greedy (the original's).")
    top_p: float = flag(1.0, "nucleus sampling threshold.")
    repetition_penalty: float = flag(1.0, "CTRL-style penalty on tokens already present.")
    seed: int | None = flag(None, "random seed for sampling.")
    overwrite: bool = flag(
        False,
        "replace outputs made with other settings or another input (a rerun with the same "
        "ones skips them; a mismatch is refused without this).",
    )

    def run(self, engine: EngineOptions | None = None) -> Path:
        """Tag; return the last file written (a group's last mission)."""
        if not self.input_file:
            raise InputError("--input_file is required")
        opts = TagOptions(
            model_path=self.model_path or "",
            guard_model_path=self.guard_model_path or None,
            reward_model_path=self.reward_model_path or None,
            save_as=self.save_as,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
            overwrite=self.overwrite,
            engine_options=engine or EngineOptions(),
        )
        outputs = run_missions(str(self.tag_mission), self.input_file, opts)
        print(f"[unitag] final output: {outputs[-1]}")
        return outputs[-1]


main, cli = command(Unitag), console(Unitag)

if __name__ == "__main__":
    cli()
