#!/usr/bin/env bash
# Qwen2-72B-Instruct on 4 GPUs; original defaults.
# Its settings are the recipe magpie/configs/recipes/qwen2-72b.yaml (also: magpie run qwen2-72b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-qwen2-72b}" exec bash "$here/magpie.sh" "$@"
