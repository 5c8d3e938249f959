#!/usr/bin/env bash
# Control task 'math': Llama-3-8B-Instruct with the math system prompt.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-1}" \
INS_EXTRA_ARGS="--control_tasks math ${INS_EXTRA_ARGS:-}" \
exec bash "$here/magpie.sh" "${1:-meta-llama/Meta-Llama-3-8B-Instruct}" "${2:-1000}" "${3:-1}" "${4:-1}" "${5:-1}" "${6:-0}"
