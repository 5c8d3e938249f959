#!/usr/bin/env bash
# Llama-2-7b-chat: original defaults.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-1}" \
exec bash "$here/magpie.sh" "${1:-meta-llama/Llama-2-7b-chat-hf}" "${2:-1000}" "${3:-1}" "${4:-1}" "${5:-1}" "${6:-0}"
