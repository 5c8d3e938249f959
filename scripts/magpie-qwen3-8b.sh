#!/usr/bin/env bash
# Qwen3-8B (not in the original): instructions temp 0.7 like Qwen2.5; responses at Qwen's
# recommended thinking-mode sampling (top_p 0.95 / temp 0.6) - greedy decoding loops in thinking mode,
# and responses will contain <think> blocks.
# Its settings are the recipe magpie/configs/recipes/qwen3-8b.yaml (also: magpie run qwen3-8b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-qwen3-8b}" exec bash "$here/magpie.sh" "$@"
