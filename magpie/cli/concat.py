"""Concatenate tagged shards into one ShareGPT JSONL (data_concatenation.ipynb)."""

from __future__ import annotations

from magpie.records import InputError
from magpie.sharegpt import concatenate
from magpie.stage import run_cli


def main(
    *input_files: str,
    id_prefix: str = "magpie",
    output_file: str | None = None,
    start_id: int = 0,
    include_system: bool = True,
    messages_file: str | None = None,
    dataset_dir: str | None = None,
    with_reasoning: bool = False,
):
    """Write every record of the INPUT_FILES shards (in order; globs and comma-separated
    lists accepted) to one JSONL with conversation_id = <id_prefix>_<n> numbered across
    shards and ShareGPT `conversations`.

    Args:
      input_files: shard files (.json or .jsonl), e.g. 'data/*/Magpie_*_language.json';
        a .json object holding the records under its one list-valued key (data, train,
        rows ...) is read too.
      id_prefix: conversation ids are <id_prefix>_<n>.
      output_file: default <id_prefix>_sharegpt.jsonl next to the first shard.
      start_id: the first n.
      include_system: keep system turns in `conversations`.
      messages_file: also write OpenAI chat lines {"messages": [...]} here.
      dataset_dir: also save a Hugging Face `datasets` dataset to this folder.
      with_reasoning: put a thinking model's `reasoning` back before each answer as
        "<think>...</think>" (for training models that think); default answers only.
    """
    if not input_files:
        raise InputError("give the shard files to concatenate")
    shards: list[str] = []
    for item in input_files:
        shards.extend(item if isinstance(item, (list, tuple)) else str(item).split(","))
    concatenate(
        shards,
        output_file,
        id_prefix=id_prefix,
        start_id=start_id,
        include_system=include_system,
        messages_file=messages_file,
        dataset_dir=dataset_dir,
        with_reasoning=with_reasoning,
    )


def cli() -> None:
    """The `magpie-concat` command."""
    run_cli(main, stage="concat")


if __name__ == "__main__":
    cli()
