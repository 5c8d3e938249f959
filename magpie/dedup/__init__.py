"""Near-duplicate detection (the original's gen_dis.py), exact and fast.

Semantics kept from the original: instructions are embedded with a sentence model,
L2-normalised, and two records are near-duplicates when the squared L2 distance between
their embeddings is below `threshold` (for unit vectors d = 2 - 2·cos). The original set
0.05 (cos > 0.975) for all-mpnet-base-v2; the embedded all-MiniLM-L6-v2 spreads the same
pairs further apart and defaults to 0.1, calibrated on tests/fixtures/dedup (see
`default_threshold`).
Every record gets

- `min_neighbor_distance`: distance to the nearest *other* record (0.0 for an exact copy,
  null when there is no other record);
- `repeat_count`: how many other records lie within the threshold (never capped);
- `min_similar_<id>` (`min_similar_conversation_id`, or `min_similar_uuid` when records
  carry `uuid`): the representative of its near-duplicate group, i.e. the smallest id among
  the record itself and its neighbours within the threshold; null when it has none.

Ids are ordered "naturally" (`magpie_2` before `magpie_10`), so on the concatenated ShareGPT
file the representative is the earliest row, as in the original, but it no longer depends
on the order of the input. The original's defects are gone: the record itself is excluded
by identity, not by rank (exact copies), N < 2 works, counts are exact, a rerun overwrites.

Search: identical texts are embedded and searched once (a copy is a neighbour at distance
0). Up to `exact_max_rows` unique texts, exact search by blocked matrix products (torch, on
the GPU when there is one); above it, FAISS approximate search (IVF or HNSW; on the GPU when
faiss-gpu sees one), whose recall against exact search is measured in bench/bench_dedup.py.

The stage is three modules: `records` (ids, the text compared, records read and
annotated), `search` (exact and FAISS neighbours over vectors, the index saved and
loaded) and `stage` (`run_distance`: embedding on the executor, search, output;
`run_distance_on_vectors`: the same on embeddings made elsewhere).

Memory: the input is streamed twice (`scan_input`, then `write_annotated`); between the
passes only ids, a few numbers per record and the unique texts' vectors are held, the
texts themselves wait on disk for the embedding (`magpie.records.Spool`).
"""

from magpie.dedup.search import DEFAULT_THRESHOLD
from magpie.dedup.stage import default_threshold, run_distance, run_distance_on_vectors

__all__ = ["DEFAULT_THRESHOLD", "default_threshold", "run_distance", "run_distance_on_vectors"]
