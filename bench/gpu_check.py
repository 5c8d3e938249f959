"""GPU check: the hf engine on CUDA in bf16, and near-duplicate search on the GPU.

For a CUDA machine whose python has torch and transformers but nothing else of ours
installed (no vLLM, no network): run from the repository root with PYTHONPATH=. (see
bench/gpu_check.sh). Everything it needs is built here:

1. A random Llama of ~100M parameters (hidden 768, 12 layers) from a config, with a
   word-level tokenizer of 32,000 made-up words. Stop ids are 1% of the vocabulary, so a
   random model ends its rows after ~100 tokens, at different times (as real answers do).
   Continuous batching (`HFEngine.generate`) against static batches through
   `model.generate` (rows wait for the slowest one), same prompts, batch size and stops.
2. Exact near-duplicate search (`magpie.dedup.search.exact_neighbours`, torch on the GPU) on
   random unit vectors with planted near-duplicate pairs: every planted pair must be
   found, and the time is printed.

Prints one JSON line per check; with $OUT set, also writes them to $OUT/gpu_check.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def word_tokenizer(vocab_size: int):
    """A fast tokenizer over words w0..w{V-1} (w0 pad, w1 eos), built without downloads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="w0", eos_token="w1", unk_token="w0"
    )


def random_llama(vocab_size: int, device: str, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    return model, params


def check_generation(args) -> dict:
    import torch

    from magpie.engines.base import SamplingParams, item_seeds
    from magpie.engines.hf import HFEngine

    dtype = getattr(torch, args.dtype)
    tok = word_tokenizer(args.vocab)
    model, params = random_llama(args.vocab, args.device, dtype)
    rng = torch.Generator().manual_seed(1)
    prompts = [
        torch.randint(2, args.vocab, (int(torch.randint(16, 64, (1,), generator=rng)),)).tolist()
        for _ in range(args.prompts)
    ]
    stop_ids = list(range(2, 2 + args.vocab // 100))
    sampling = SamplingParams(
        temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, stop_token_ids=stop_ids
    )
    engine = HFEngine("random-llama", model=model, tokenizer=tok, batch_size=args.batch_size)
    seeds = item_seeds(0, "gpu_check", range(len(prompts)))
    engine.generate(prompts[: args.batch_size], sampling, seeds[: args.batch_size])  # warm-up
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    ours = engine.generate(prompts, sampling, seeds)
    sync()
    ours_s = time.perf_counter() - start
    ours_tokens = sum(c.completion_tokens for (c,) in ours)

    start = time.perf_counter()
    static_tokens = 0
    with torch.inference_mode():
        for a in range(0, len(prompts), args.batch_size):
            batch = prompts[a : a + args.batch_size]
            width = max(len(p) for p in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, p in enumerate(batch):
                ids[i, width - len(p) :] = torch.tensor(p)
                mask[i, width - len(p) :] = 1
            out = model.generate(
                input_ids=ids.to(args.device),
                attention_mask=mask.to(args.device),
                do_sample=True,
                top_p=1.0,
                top_k=0,
                max_new_tokens=args.max_tokens,
                eos_token_id=stop_ids,
                pad_token_id=0,
            )
            new = out[:, width:]
            for row in new.tolist():
                kept = next((i + 1 for i, t in enumerate(row) if t in set(stop_ids)), len(row))
                static_tokens += kept
    sync()
    static_s = time.perf_counter() - start
    return {
        "check": "hf_engine_cuda",
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "dtype": args.dtype,
        "parameters_m": round(params / 1e6, 1),
        "prompts": len(prompts),
        "batch_size": args.batch_size,
        "max_tokens": args.max_tokens,
        "continuous_s": round(ours_s, 2),
        "continuous_tok_per_s": round(ours_tokens / ours_s, 1),
        "static_s": round(static_s, 2),
        "static_tok_per_s": round(static_tokens / static_s, 1),
        "speedup": round((ours_tokens / ours_s) / (static_tokens / static_s), 2),
    }


def check_dedup(args) -> dict:
    import numpy as np
    import torch

    from magpie.dedup.search import exact_neighbours

    rng = np.random.default_rng(0)
    n, dim, pairs = args.vectors, 384, args.vectors // 10
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    # Plant near-duplicates: row i + pairs is row i plus small noise (squared L2 ~ 0.01).
    vectors[pairs : 2 * pairs] = vectors[:pairs] + 0.004 * rng.standard_normal((pairs, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    weights = np.ones(n, dtype=np.int64)
    ranks = np.arange(n)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    start = time.perf_counter()
    found = exact_neighbours(vectors, weights, ranks, 0.05, args.device, progress=False)
    sync()
    seconds = time.perf_counter() - start
    distances = np.asarray(found.min_distance)
    planted = distances[: 2 * pairs]
    return {
        "check": "dedup_exact",
        "device": args.device,
        "vectors": n,
        "planted_pairs": pairs,
        "planted_found": int((planted <= 0.05).sum()),
        "planted_expected": 2 * pairs,
        "others_flagged": int((distances[2 * pairs :] <= 0.05).sum()),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--prompts", type=int, default=512)
    ap.add_argument("--batch_size", type=int, default=128)
    ap.add_argument("--max_tokens", type=int, default=256)
    ap.add_argument("--vectors", type=int, default=200_000)
    args = ap.parse_args()
    rows = [check_generation(args), check_dedup(args)]
    out = os.environ.get("OUT")
    for row in rows:
        print(json.dumps(row), flush=True)
    if out:
        Path(out, "gpu_check.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
