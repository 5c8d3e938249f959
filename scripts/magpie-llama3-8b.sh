#!/usr/bin/env bash
# Llama-3-8B-Instruct: original defaults (instructions top_p 1 / temp 1, greedy responses).
# Its settings are the recipe magpie/configs/recipes/llama3-8b.yaml (also: magpie run llama3-8b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-llama3-8b}" exec bash "$here/magpie.sh" "$@"
