#!/usr/bin/env bash
# Phi-3-small-128k-instruct: original defaults. Its tokenizer is custom code, hence --trust_remote_code
# (the original always trusted remote code).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-1}" \
INS_EXTRA_ARGS="--trust_remote_code ${INS_EXTRA_ARGS:-}" \
RES_EXTRA_ARGS="--trust_remote_code ${RES_EXTRA_ARGS:-}" \
exec bash "$here/magpie.sh" "${1:-microsoft/Phi-3-small-128k-instruct}" "${2:-1000}" "${3:-1}" "${4:-1}" "${5:-1}" "${6:-0}"
