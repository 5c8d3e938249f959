#!/usr/bin/env bash
# Llama-2-70b-chat on 4 GPUs; original defaults (its config entry now exists).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0,1,2,3}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-4}" \
exec bash "$here/magpie.sh" "${1:-meta-llama/Llama-2-70b-chat-hf}" "${2:-1000}" "${3:-1}" "${4:-1}" "${5:-1}" "${6:-0}"
