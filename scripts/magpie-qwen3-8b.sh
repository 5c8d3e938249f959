#!/usr/bin/env bash
# Qwen3-8B (not in the original): instructions temp 0.7 like Qwen2.5; responses at Qwen's
# recommended thinking-mode sampling (top_p 0.95 / temp 0.6) - greedy decoding loops in thinking mode,
# and responses will contain <think> blocks.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${DEVICE:-0}" TENSOR_PARALLEL="${TENSOR_PARALLEL:-1}" \
exec bash "$here/magpie.sh" "${1:-Qwen/Qwen3-8B}" "${2:-1000}" "${3:-1}" "${4:-0.7}" "${5:-0.95}" "${6:-0.6}"
