#!/usr/bin/env bash
# Qwen2.5-32B-Instruct on 4 GPUs: instructions temp 0.6; greedy responses.
# Its settings are the recipe magpie/configs/recipes/qwen2.5-32b.yaml (also: magpie run qwen2.5-32b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-qwen2.5-32b}" exec bash "$here/magpie.sh" "$@"
