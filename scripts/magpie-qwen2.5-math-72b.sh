#!/usr/bin/env bash
# Qwen2.5-Math-72B-Instruct on 4 GPUs: top_p 0.9 / temp 0.6 for both stages, hotter first
# instruction token (flaming tokens).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0,1,2,3}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-4}" \
INS_EXTRA_ARGS="--flaming_tokens ${INS_EXTRA_ARGS:-}" \
exec bash "$here/magpie.sh" "${1:-Qwen/Qwen2.5-Math-72B-Instruct}" "${2:-1000}" "${3:-0.9}" "${4:-0.6}" "${5:-0.9}" "${6:-0.6}"
