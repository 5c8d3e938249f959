#!/usr/bin/env bash
# Llama-3.2-3B-Instruct (not in the original): the Llama-3.1-8B recipe without the de-markdown
# processor (it only applies to Llama-3.1 paths) - instructions temp 0.8, no newline early stop,
# sanitised, 1024 tokens; responses top_p 0.9 / temp 0.6.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-1}" \
INS_EXTRA_ARGS="--disable_early_stopping --sanitize --max_tokens 1024 ${INS_EXTRA_ARGS:-}" \
exec bash "$here/magpie.sh" "${1:-meta-llama/Llama-3.2-3B-Instruct}" "${2:-1000}" "${3:-1}" "${4:-0.8}" "${5:-0.9}" "${6:-0.6}"
