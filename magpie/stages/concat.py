"""Concatenate tagged shards into one ShareGPT JSONL (data_concatenation.ipynb)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from magpie.card import update_card, write_stage_meta
from magpie.engines import EngineOptions
from magpie.hub import hub_token, push_to_hub, write_parquet
from magpie.records import InputError
from magpie.settings import Settings, command, console, flag
from magpie.sharegpt import concatenate, expand_shards


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
    parquet_dir: str | None = flag(
        None,
        "also write the export as Parquet shards in this folder (data/train-*.parquet "
        "and a README.md dataset card): datasets.load_dataset(folder) reads it.",
    )
    shard_records: int = flag(100_000, "records per Parquet shard.")
    license: str | None = flag(
        None, "the dataset's license for its card, e.g. apache-2.0 (the model's terms decide)."
    )
    push_to_hub: str | None = flag(
        None,
        "upload the Parquet folder (--parquet_dir, default <output stem>_parquet/) to this "
        "Hugging Face dataset repository (user/name); the token is read from HF_TOKEN.",
    )
    private: bool = flag(False, "make the repository --push_to_hub creates private.")

    def run(self, engine: EngineOptions | None = None) -> Path:
        """Write the ShareGPT JSONL (and the optional exports); return its path."""
        items = self.input_files
        if isinstance(items, str | Path):  # one path, glob or comma list (a recipe's)
            items = [items]
        if not items:
            raise InputError("give the shard files to concatenate")
        if self.push_to_hub:
            hub_token()  # no token: say so before any work
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
        output = Path(result["output"])
        not_counts = ("output", "records", "shards", "messages", "dataset_dir")
        flags = {k: v for k, v in result.items() if k not in not_counts}
        self.export_card(output, expand_shards(shards), flags)
        return output

    def export_card(self, output: Path, shards: list[str], flags: dict) -> None:
        """The meta file (with the summary's `flags`), the Parquet shards, the dataset
        card(s) and the upload."""
        parquet_dir = self.parquet_dir
        if self.push_to_hub and not parquet_dir:
            parquet_dir = str(output.with_name(f"{output.stem}_parquet"))
        if parquet_dir:
            parquet_dir = str(Path(parquet_dir).resolve())
        write_stage_meta(self, output, shards, flags, parquet_dir=parquet_dir)
        if parquet_dir:
            write_parquet(output, parquet_dir, int(self.shard_records))
        update_card(output)
        if self.push_to_hub:
            push_to_hub(parquet_dir, self.push_to_hub, private=bool(self.private))


main, cli = command(Concat), console(Concat)

if __name__ == "__main__":
    cli()
