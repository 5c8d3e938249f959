"""The export as Parquet shards that `datasets.load_dataset(folder)` reads with the card's
configs, and their upload to the Hugging Face Hub (concat's --parquet_dir, --push_to_hub).

Records are streamed in row groups, never all held; the token comes from the environment
only and is never printed, logged or stored.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from magpie.records import InputError, iter_records

CARD_NAME = "README.md"
TOKEN_VARIABLE = "HF_TOKEN"
DATA_DIR = "data"
SHARD_RECORDS = 100_000  # records per Parquet file
ROW_GROUP_RECORDS = 10_000  # records held at a time while writing one


def write_parquet(
    records_file: str | os.PathLike,
    folder: str | os.PathLike,
    shard_records: int = SHARD_RECORDS,
    row_group_records: int = ROW_GROUP_RECORDS,
) -> list[Path]:
    """The records of a file as `<folder>/data/train-0000i-of-0000N.parquet`, each shard
    holding `shard_records` records written in row groups of `row_group_records`: two
    streaming passes (the first settles one schema for every shard, the second writes),
    never more than a row group in memory. Shards of an earlier run are replaced."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if shard_records < 1 or row_group_records < 1:
        raise InputError("shard and row-group sizes must be at least 1 record")
    records_file = Path(records_file)
    schema, total, fit = _schema(records_file, row_group_records)
    shards = max(1, -(-total // shard_records))
    data = Path(folder) / DATA_DIR
    data.mkdir(parents=True, exist_ok=True)
    for old in data.glob("train-*.parquet"):
        old.unlink()
    names = [data / f"train-{i:05d}-of-{shards:05d}.parquet" for i in range(shards)]
    records = iter_records(records_file, allow_empty=True)
    written = 0
    for name in names:
        tmp = name.with_name(f".{name.name}.tmp")
        try:
            with pq.ParquetWriter(tmp, schema) as writer:
                # this shard's records only, a row group at a time
                for batch in _batches(islice(records, shard_records), row_group_records):
                    writer.write_table(_table(batch, schema, fit, records_file, written, pa))
                    written += len(batch)
            os.replace(tmp, name)
        finally:
            tmp.unlink(missing_ok=True)
    return names


def _batches(records: Iterator[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _table(batch: list[dict], schema, fit: bool, path: Path, start: int, pa):
    """A row group's table (its records shaped to the schema first when it had to drop
    empty structs)."""
    try:
        rows = [_fitted(r, schema) for r in batch] if fit else batch
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputError(
            f"{path}: records {start}-{start + len(batch) - 1} cannot be stored as Parquet ({e})"
        ) from None


def _schema(path: Path, size: int):
    """One Arrow schema for every record (types widened across batches: null to any,
    int to float; empty structs, which Parquet cannot store, become null), the count, and
    whether records must be shaped to it (`_fitted`: an empty struct was replaced)."""
    import pyarrow as pa

    schemas, total = [], 0
    for batch in _batches(iter_records(path, allow_empty=True), size):
        try:
            kind = pa.array(batch).type  # the union of every record's keys (not the first's)
            schemas.append(pa.schema(list(kind)))
            schemas = [pa.unify_schemas(schemas, promote_options="permissive")]
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InputError(
                f"{path}: records {total}-{total + len(batch) - 1} mix types in a field and "
                f"cannot be stored as Parquet ({e})"
            ) from None
        total += len(batch)
    if not schemas:
        return pa.schema([]), 0, False
    schema = pa.schema([f.with_type(_storable(f.type)) for f in schemas[0]])
    return schema, total, schema != schemas[0]


def _storable(kind):
    """The type with every struct of no field replaced by null (Parquet has no such type)."""
    import pyarrow as pa

    if pa.types.is_struct(kind):
        if kind.num_fields == 0:
            return pa.null()
        return pa.struct(
            [kind.field(i).with_type(_storable(kind.field(i).type)) for i in range(kind.num_fields)]
        )
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.list_(_storable(kind.value_type))
    return kind


def _fitted(value, kind):
    """A record's value shaped to the schema: a null-typed field holds None, so an empty
    object ({}) or an all-null column reads back as null."""
    import pyarrow as pa

    if isinstance(kind, pa.Schema):
        return {f.name: _fitted(value.get(f.name), f.type) for f in kind} if value else {}
    if value is None or pa.types.is_null(kind):
        return None
    if pa.types.is_struct(kind) and isinstance(value, dict):
        return {
            kind.field(i).name: _fitted(value.get(kind.field(i).name), kind.field(i).type)
            for i in range(kind.num_fields)
        }
    if pa.types.is_list(kind) and isinstance(value, list):
        return [_fitted(v, kind.value_type) for v in value]
    return value


# ------------------------------------------------------------------ the Hub
def hub_token() -> str:
    """The Hugging Face token from the environment (HF_TOKEN); InputError without one.
    Called before any work so that a run does not end in a failed upload."""
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise InputError(
            f"--push_to_hub needs a Hugging Face token with write access in the "
            f"{TOKEN_VARIABLE} environment variable (it is read from there only, never "
            "from a flag or a file)"
        )
    return token


def push_to_hub(folder: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Upload a dataset folder (its card and Parquet shards) to the Hub as the dataset
    `repo_id`, creating the repository when needed; returns its address. The token
    comes from HF_TOKEN and goes to huggingface_hub only."""
    from huggingface_hub import HfApi

    token = hub_token()
    folder = Path(folder)
    if not (folder / CARD_NAME).is_file():
        raise InputError(f"{folder}: no {CARD_NAME} (dataset card) to upload with the data")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="dataset",
        commit_message="Upload a Magpie dataset",
        ignore_patterns=[".magpie/*", ".*"],
        delete_patterns=[f"{DATA_DIR}/train-*.parquet"],  # an earlier push's shards
    )
    url = f"https://huggingface.co/datasets/{repo_id}"
    print(f"[concat] pushed {folder} to {url}")
    return url
