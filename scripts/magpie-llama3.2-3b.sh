#!/usr/bin/env bash
# Llama-3.2-3B-Instruct (not in the original): the Llama-3.1-8B recipe without the de-markdown
# processor (it only applies to Llama-3.1 paths) - instructions temp 0.8, no newline early stop,
# sanitised, 1024 tokens; responses top_p 0.9 / temp 0.6.
# Its settings are the recipe magpie/configs/recipes/llama3.2-3b.yaml (also: magpie run llama3.2-3b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-llama3.2-3b}" exec bash "$here/magpie.sh" "$@"
