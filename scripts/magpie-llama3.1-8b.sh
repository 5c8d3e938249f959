#!/usr/bin/env bash
# Llama-3.1-8B-Instruct: cooler instructions (temp 0.8), no newline early stop, sanitised,
# de-markdown first token; responses top_p 0.9 / temp 0.6.
# Its settings are the recipe magpie/configs/recipes/llama3.1-8b.yaml (also: magpie run llama3.1-8b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-llama3.1-8b}" exec bash "$here/magpie.sh" "$@"
