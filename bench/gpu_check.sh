#!/usr/bin/env bash
# GPU check (issue: real vLLM / exact generation): on a CUDA machine whose python has torch
# and transformers (no vLLM, nothing fetchable), run from anywhere; under 8 minutes on one
# H200. Prints JSON lines (and writes $OUT/gpu_check.jsonl when OUT is set); put the
# figures in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONPATH=. timeout 450 python3 bench/gpu_check.py "$@"
