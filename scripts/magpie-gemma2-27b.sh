#!/usr/bin/env bash
# Gemma-2-27b-it: 10 samples per prompt, batch 2, no newline early stop, sanitised, 512-token
# instructions; greedy 2048-token responses. (The original forced --engine hf; ours picks the engine.)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-1}" N="${N:-10}" BATCH_SIZE="${BATCH_SIZE:-2}" \
INS_EXTRA_ARGS="--disable_early_stopping --sanitize --max_tokens 512 ${INS_EXTRA_ARGS:-}" \
RES_EXTRA_ARGS="--max_tokens 2048 ${RES_EXTRA_ARGS:-}" \
exec bash "$here/magpie.sh" "${1:-google/gemma-2-27b-it}" "${2:-1000}" "${3:-1}" "${4:-1}" "${5:-1}" "${6:-0}"
