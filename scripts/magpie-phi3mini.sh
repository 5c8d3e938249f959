#!/usr/bin/env bash
# Phi-3-mini-128k-instruct: original defaults.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-1}" \
exec bash "$here/magpie.sh" "${1:-microsoft/Phi-3-mini-128k-instruct}" "${2:-1000}" "${3:-1}" "${4:-1}" "${5:-1}" "${6:-0}"
