"""Near-duplicates: nearest-neighbour distance and repetition (the original's gen_dis.py)."""

from __future__ import annotations

from magpie.dedup import run_distance
from magpie.engines import ENGINE_FLAGS_HELP, EXECUTOR_FLAGS, EngineOptions
from magpie.records import InputError
from magpie.stage import run_cli


def main(
    input_file: str | None = None,
    output_file: str | None = None,
    sentence_model: str = "",
    distance_threshold: float | None = None,
    distance_distance_threshold: float | None = None,
    text_field: str = "instruction",
    id_field: str | None = None,
    search: str = "auto",
    index_type: str = "ivf",
    exact_max_rows: int | None = None,
    search_space_size: int = 16,
    nprobe: int = 16,
    search_batch_size: int = 4096,
    encoding_batch_size: int | None = None,
    device: str | None = None,
    dtype: str = "auto",
    save_faiss_index: bool = False,
    faiss_index: str | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    num_replicas: int = 1,
    gpus_per_replica: float | None = None,
    cpus_per_replica: float = 1,
):
    """Annotate each record of INPUT_FILE with min_neighbor_distance, repeat_count and
    min_similar_conversation_id (min_similar_uuid for records with a uuid).

    The unique texts are embedded here, or with --executor ray on replicas of the
    sentence model (the same vectors); the search runs on this node.

    Args:
      input_file: .json or .jsonl records with an id (uuid, conversation_id or id) and an
        instruction (or a conversation to take the first user turn from).
      output_file: default <input stem>_distance.jsonl next to the input; a rerun replaces it.
      sentence_model: any sentence-transformers model; default all-MiniLM-L6-v2 (embedded).
      distance_threshold: squared L2 between unit embeddings below which two records are
        near-duplicates (d = 2 - 2 cos). Default per model, 0.1 for all-MiniLM-L6-v2
        (calibrated), the original's 0.05 (cosine above 0.975) for all-mpnet-base-v2 and
        other models; the run logs which.
      distance_distance_threshold: the original's spelling of --distance_threshold.
      text_field: the field compared (default instruction).
      id_field: the id naming representatives; default uuid, else conversation_id, else id.
      search: auto (exact up to --exact_max_rows unique texts, approximate above), exact or
        approximate.
      index_type: ivf or hnsw, for approximate search.
      exact_max_rows: largest exact search; default 50000 on CPU, 2000000 on a GPU.
      search_space_size: neighbours fetched first per query by approximate search; more are
        fetched when all of them are near-duplicates (counts are never capped).
      nprobe: IVF lists visited per query.
      search_batch_size: kept for compatibility (searches are blocked by memory).
      encoding_batch_size: sentences per forward pass of the sentence model; default 64 on
        a CPU (fastest there), 256 on a GPU; at most 256, fewer for long texts (the
        original's 65536 meant chunks of work, read as 256).
      device: cpu, cuda, cuda:N or N; default CUDA when present.
      dtype: auto (default: bfloat16 where the device computes it natively, i.e. CPUs with
        AVX-512 BF16 or AMX and recent GPUs, else float32), float32 (exactly the
        original's distances) or bfloat16 (about 2x faster embedding on those CPUs;
        near-duplicate distances move by about 0.002).
      save_faiss_index: also write <output stem>.faiss (+ .faiss.json) for --faiss_index.
      faiss_index: reuse a saved index (skips embedding); refused if built from other data.
    """
    del search_batch_size
    if not input_file:
        raise InputError("--input_file is required")
    if distance_distance_threshold is not None:
        distance_threshold = distance_distance_threshold
    runner = EngineOptions(
        executor=executor,
        ray_address=ray_address,
        num_replicas=num_replicas,
        gpus_per_replica=gpus_per_replica,
        cpus_per_replica=cpus_per_replica,
    ).make_executor()
    try:
        run_distance(
            input_file,
            output_file,
            sentence_model=sentence_model,
            threshold=None if distance_threshold is None else float(distance_threshold),
            text_field=text_field,
            id_field=id_field,
            method=search,
            index_type=index_type,
            search_space_size=search_space_size,
            nprobe=nprobe,
            exact_max_rows=exact_max_rows,
            batch_size=None if encoding_batch_size is None else min(int(encoding_batch_size), 256),
            device=device,
            dtype=dtype,
            save_faiss_index=save_faiss_index,
            faiss_index=faiss_index,
            executor=runner,
        )
    finally:
        runner.close()


# The executor flags' help, shared with the engine stages.
main.__doc__ = (
    main.__doc__.rstrip()
    + "\n"
    + "".join(f"      {k}: {ENGINE_FLAGS_HELP[k]}\n" for k in EXECUTOR_FLAGS)
)


def cli() -> None:
    """The `magpie-gen-dis` command."""
    run_cli(main, stage="gen_dis")


if __name__ == "__main__":
    cli()
