#!/usr/bin/env bash
# Llama-3-70B-Instruct on 4 GPUs (tensor parallel 4); original defaults.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0,1,2,3}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-4}" \
exec bash "$here/magpie.sh" "${1:-meta-llama/Meta-Llama-3-70B-Instruct}" "${2:-1000}" "${3:-1}" "${4:-1}" "${5:-1}" "${6:-0}"
