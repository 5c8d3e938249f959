"""Concatenate tagged shards into one ShareGPT JSONL (data_concatenation.ipynb)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from magpie.engines import EngineOptions
from magpie.records import InputError
from magpie.settings import Settings, command, console, flag
from magpie.sharegpt import concatenate


@dataclasses.dataclass
class Concat(Settings):
    """Write every record of the INPUT_FILES shards (in order; globs and comma-separated
    lists accepted) to one JSONL with conversation_id = <id_prefix>_<n> numbered across
    shards and ShareGPT `conversations`."""

    stage = "concat"
    input_field: ClassVar[str | None] = "input_files"

    input_files: list[str] = flag(
        [],
        "shard files (.json or .jsonl), e.g. 'data/*/Magpie_*_language.json'; a .json "
        "object holding the records under its one list-valued key (data, train, rows ...) "
        "is read too.",
        positional=True,
    )
    id_prefix: str = flag("magpie", "conversation ids are <id_prefix>_<n>.")
    output_file: str | None = flag(
        None, "default <id_prefix>_sharegpt.jsonl next to the first shard."
    )
    start_id: int = flag(0, "the first n.")
    include_system: bool = flag(True, "keep system turns in `conversations`.")
    messages_file: str | None = flag(None, 'also write OpenAI chat lines {"messages": [...]} here.')
    dataset_dir: str | None = flag(
        None, "also save a Hugging Face `datasets` dataset to this folder."
    )
    with_reasoning: bool = flag(
        False,
        "put a thinking model's `reasoning` back before each answer as "
        '"<think>...</think>" (for training models that think); default answers only.',
    )

    def run(self, engine: EngineOptions | None = None) -> Path:
        """Write the ShareGPT JSONL (and the optional exports); return its path."""
        items = self.input_files
        if isinstance(items, str | Path):  # one path, glob or comma list (a recipe's)
            items = [items]
        if not items:
            raise InputError("give the shard files to concatenate")
        shards: list[str] = []
        for item in items:
            shards.extend(item if isinstance(item, list | tuple) else str(item).split(","))
        result = concatenate(
            shards,
            self.output_file,
            id_prefix=self.id_prefix,
            start_id=self.start_id,
            include_system=self.include_system,
            messages_file=self.messages_file,
            dataset_dir=self.dataset_dir,
            with_reasoning=self.with_reasoning,
        )
        return Path(result["output"])


main, cli = command(Concat), console(Concat)

if __name__ == "__main__":
    cli()
