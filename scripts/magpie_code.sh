#!/usr/bin/env bash
# Control task 'code': Llama-3-8B-Instruct with the coding system prompt.
# Its settings are the recipe magpie/configs/recipes/code.yaml (also: magpie run code).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-code}" exec bash "$here/magpie.sh" "$@"
