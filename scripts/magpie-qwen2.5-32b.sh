#!/usr/bin/env bash
# Qwen2.5-32B-Instruct on 4 GPUs: instructions temp 0.6; greedy responses.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0,1,2,3}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-4}" \
exec bash "$here/magpie.sh" "${1:-Qwen/Qwen2.5-32B-Instruct}" "${2:-1000}" "${3:-1}" "${4:-0.6}" "${5:-1}" "${6:-0}"
