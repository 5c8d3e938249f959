#!/usr/bin/env bash
# Control task 'math': Llama-3-8B-Instruct with the math system prompt.
# Its settings are the recipe magpie/configs/recipes/math.yaml (also: magpie run math).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-math}" exec bash "$here/magpie.sh" "$@"
