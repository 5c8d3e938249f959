#!/usr/bin/env bash
# Llama-3-8B-Instruct: original defaults (instructions top_p 1 / temp 1, greedy responses).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-1}" \
exec bash "$here/magpie.sh" "${1:-meta-llama/Meta-Llama-3-8B-Instruct}" "${2:-1000}" "${3:-1}" "${4:-1}" "${5:-1}" "${6:-0}"
