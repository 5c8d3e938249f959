#!/usr/bin/env bash
# Qwen2-Math-7B-Instruct: original defaults.
# Its settings are the recipe magpie/configs/recipes/qwen2-math-7b.yaml (also: magpie run qwen2-math-7b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-qwen2-math-7b}" exec bash "$here/magpie.sh" "$@"
