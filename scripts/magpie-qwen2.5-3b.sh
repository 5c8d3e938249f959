#!/usr/bin/env bash
# Qwen2.5-3B-Instruct on GPU 1 (as the original): instructions temp 0.7; greedy responses.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-1}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-1}" \
exec bash "$here/magpie.sh" "${1:-Qwen/Qwen2.5-3B-Instruct}" "${2:-1000}" "${3:-1}" "${4:-0.7}" "${5:-1}" "${6:-0}"
