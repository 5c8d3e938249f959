#!/usr/bin/env bash
# Llama-3.3-70B-Instruct on 4 GPUs: no newline early stop, sanitised, 1024-token instructions;
# greedy responses.
# Its settings are the recipe magpie/configs/recipes/llama3.3-70b.yaml (also: magpie run llama3.3-70b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-llama3.3-70b}" exec bash "$here/magpie.sh" "$@"
