#!/usr/bin/env bash
# Llama-3.1-70B-Instruct on 4 GPUs: instructions temp 0.9, no newline early stop, sanitised,
# de-markdown first token; responses top_p 0.9 / temp 0.6.
# Its settings are the recipe magpie/configs/recipes/llama3.1-70b.yaml (also: magpie run llama3.1-70b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-llama3.1-70b}" exec bash "$here/magpie.sh" "$@"
