#!/usr/bin/env bash
# Qwen2.5-14B-Instruct on 2 GPUs: instructions temp 0.7; greedy responses.
# Its settings are the recipe magpie/configs/recipes/qwen2.5-14b.yaml (also: magpie run qwen2.5-14b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-qwen2.5-14b}" exec bash "$here/magpie.sh" "$@"
