#!/usr/bin/env bash
# Llama-3-70B-Instruct on 4 GPUs (tensor parallel 4); original defaults.
# Its settings are the recipe magpie/configs/recipes/llama3-70b.yaml (also: magpie run llama3-70b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-llama3-70b}" exec bash "$here/magpie.sh" "$@"
