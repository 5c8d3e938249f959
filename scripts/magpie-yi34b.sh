#!/usr/bin/env bash
# Yi-1.5-34B-Chat on 4 GPUs; original defaults.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0,1,2,3}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-4}" \
exec bash "$here/magpie.sh" "${1:-01-ai/Yi-1.5-34B-Chat}" "${2:-1000}" "${3:-1}" "${4:-1}" "${5:-1}" "${6:-0}"
