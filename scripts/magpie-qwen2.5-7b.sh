#!/usr/bin/env bash
# Qwen2.5-7B-Instruct: instructions temp 0.7; greedy responses.
# Its settings are the recipe magpie/configs/recipes/qwen2.5-7b.yaml (also: magpie run qwen2.5-7b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-qwen2.5-7b}" exec bash "$here/magpie.sh" "$@"
