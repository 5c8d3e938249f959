#!/usr/bin/env bash
# Qwen2.5-14B-Instruct on 2 GPUs: instructions temp 0.7; greedy responses.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0,1}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-2}" \
exec bash "$here/magpie.sh" "${1:-Qwen/Qwen2.5-14B-Instruct}" "${2:-1000}" "${3:-1}" "${4:-0.7}" "${5:-1}" "${6:-0}"
