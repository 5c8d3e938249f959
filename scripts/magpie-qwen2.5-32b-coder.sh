#!/usr/bin/env bash
# Qwen2.5-Coder-32B-Instruct on 4 GPUs; original defaults.
# Its settings are the recipe magpie/configs/recipes/qwen2.5-32b-coder.yaml (also: magpie run qwen2.5-32b-coder).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-qwen2.5-32b-coder}" exec bash "$here/magpie.sh" "$@"
