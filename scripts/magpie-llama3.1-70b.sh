#!/usr/bin/env bash
# Llama-3.1-70B-Instruct on 4 GPUs: instructions temp 0.9, no newline early stop, sanitised,
# de-markdown first token; responses top_p 0.9 / temp 0.6.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0,1,2,3}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-4}" \
INS_EXTRA_ARGS="--disable_early_stopping --sanitize --logits_processor --max_tokens 1024 ${INS_EXTRA_ARGS:-}" \
exec bash "$here/magpie.sh" "${1:-meta-llama/Meta-Llama-3.1-70B-Instruct}" "${2:-1000}" "${3:-1}" "${4:-0.9}" "${5:-0.9}" "${6:-0.6}"
