#!/usr/bin/env bash
# Qwen2.5-Math-72B-Instruct on 4 GPUs: top_p 0.9 / temp 0.6 for both stages, hotter first
# instruction token (flaming tokens).
# Its settings are the recipe magpie/configs/recipes/qwen2.5-math-72b.yaml (also: magpie run qwen2.5-math-72b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-qwen2.5-math-72b}" exec bash "$here/magpie.sh" "$@"
