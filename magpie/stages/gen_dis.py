"""Near-duplicates: nearest-neighbour distance and repetition (the original's gen_dis.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from magpie.card import after_stage
from magpie.dedup import run_distance
from magpie.engines import ENGINE_FLAGS_HELP, EngineOptions, make_executor
from magpie.records import InputError
from magpie.settings import Settings, command, console, flag


@dataclasses.dataclass
class GenDis(Settings):
    """Annotate each record of INPUT_FILE with min_neighbor_distance, repeat_count and
    min_similar_conversation_id (min_similar_uuid for records with a uuid).

    The unique texts are embedded here, or with --executor ray on replicas of the
    sentence model (the same vectors); the search runs on this node."""

    stage = "gen_dis"

    input_file: str | None = flag(
        None,
        ".json or .jsonl records with an id (uuid, conversation_id or id) and an "
        "instruction (or a conversation to take the first user turn from).",
    )
    output_file: str | None = flag(
        None, "default <input stem>_distance.jsonl next to the input; a rerun replaces it."
    )
    sentence_model: str = flag(
        "", "any sentence-transformers model; default all-MiniLM-L6-v2 (embedded)."
    )
    distance_threshold: float | None = flag(
        None,
        "squared L2 between unit embeddings below which two records are near-duplicates "
        "(d = 2 - 2 cos). Default per model, 0.1 for all-MiniLM-L6-v2 (calibrated), the "
        "original's 0.05 (cosine above 0.975) for all-mpnet-base-v2 and other models; the "
        "run logs which.",
    )
    distance_distance_threshold: float | None = flag(
        None, "the original's spelling of --distance_threshold."
    )
    text_field: str = flag("instruction", "the field compared (default instruction).")
    id_field: str | None = flag(
        None, "the id naming representatives; default uuid, else conversation_id, else id."
    )
    search: str = flag(
        "auto",
        "auto (exact up to --exact_max_rows unique texts, approximate above), exact or "
        "approximate.",
    )
    index_type: str = flag("ivf", "ivf or hnsw, for approximate search.")
    exact_max_rows: int | None = flag(
        None, "largest exact search; default 50000 on CPU, 2000000 on a GPU."
    )
    search_space_size: int = flag(
        16,
        "neighbours fetched first per query by approximate search; more are fetched when "
        "all of them are near-duplicates (counts are never capped).",
    )
    nprobe: int = flag(16, "IVF lists visited per query.")
    search_batch_size: int = flag(4096, "kept for compatibility (searches are blocked by memory).")
    encoding_batch_size: int | None = flag(
        None,
        "sentences per forward pass of the sentence model; default 64 on a CPU (fastest "
        "there), 256 on a GPU; at most 256, fewer for long texts (the original's 65536 "
        "meant chunks of work, read as 256).",
    )
    device: str | None = flag(None, "cpu, cuda, cuda:N or N; default CUDA when present.")
    dtype: str = flag(
        "auto",
        "auto (default: bfloat16 where the device computes it natively, i.e. CPUs with "
        "AVX-512 BF16 or AMX and recent GPUs, else float32), float32 (exactly the "
        "original's distances) or bfloat16 (about 2x faster embedding on those CPUs; "
        "near-duplicate distances move by about 0.002).",
    )
    save_faiss_index: bool = flag(
        False, "also write <output stem>.faiss (+ .faiss.json) for --faiss_index."
    )
    faiss_index: str | None = flag(
        None, "reuse a saved index (skips embedding); refused if built from other data."
    )
    # The executor flags, with the engine stages' help.
    executor: str = flag("local", ENGINE_FLAGS_HELP["executor"])
    ray_address: str | None = flag(None, ENGINE_FLAGS_HELP["ray_address"])
    num_replicas: int = flag(1, ENGINE_FLAGS_HELP["num_replicas"])
    gpus_per_replica: float | None = flag(None, ENGINE_FLAGS_HELP["gpus_per_replica"])
    cpus_per_replica: float = flag(1, ENGINE_FLAGS_HELP["cpus_per_replica"])

    def run(self, engine: EngineOptions | None = None) -> Path:
        """Write the annotated records; return their file."""
        if not self.input_file:
            raise InputError("--input_file is required")
        distance_threshold = self.distance_threshold
        if self.distance_distance_threshold is not None:
            distance_threshold = self.distance_distance_threshold
        runner = make_executor(
            self.executor,
            self.ray_address,
            self.num_replicas,
            self.gpus_per_replica,
            self.cpus_per_replica,
        )
        batch_size = self.encoding_batch_size
        try:
            timings = run_distance(
                self.input_file,
                self.output_file,
                sentence_model=self.sentence_model,
                threshold=None if distance_threshold is None else float(distance_threshold),
                text_field=self.text_field,
                id_field=self.id_field,
                method=self.search,
                index_type=self.index_type,
                search_space_size=self.search_space_size,
                nprobe=self.nprobe,
                exact_max_rows=self.exact_max_rows,
                batch_size=None if batch_size is None else min(int(batch_size), 256),
                device=self.device,
                dtype=self.dtype,
                save_faiss_index=self.save_faiss_index,
                faiss_index=self.faiss_index,
                executor=runner,
            )
        finally:
            runner.close()
        after_stage(self, timings["output"])  # meta file; the export's card brought up to date
        return Path(timings["output"])


main, cli = command(GenDis), console(GenDis)

if __name__ == "__main__":
    cli()
