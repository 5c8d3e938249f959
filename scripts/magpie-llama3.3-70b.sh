#!/usr/bin/env bash
# Llama-3.3-70B-Instruct on 4 GPUs: no newline early stop, sanitised, 1024-token instructions;
# greedy responses.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0,1,2,3}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-4}" \
INS_EXTRA_ARGS="--disable_early_stopping --sanitize --max_tokens 1024 ${INS_EXTRA_ARGS:-}" \
exec bash "$here/magpie.sh" "${1:-meta-llama/Llama-3.3-70B-Instruct}" "${2:-1000}" "${3:-1}" "${4:-1}" "${5:-1}" "${6:-0}"
