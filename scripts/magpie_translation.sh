#!/usr/bin/env bash
# Control task 'translation': Llama-3-8B-Instruct with the translation system prompt, no newline
# early stop (texts to translate span lines).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-1}" \
INS_EXTRA_ARGS="--control_tasks translation --disable_early_stopping ${INS_EXTRA_ARGS:-}" \
exec bash "$here/magpie.sh" "${1:-meta-llama/Meta-Llama-3-8B-Instruct}" "${2:-1000}" "${3:-1}" "${4:-1}" "${5:-1}" "${6:-0}"
