#!/usr/bin/env bash
# Llama-2-7b-chat: original defaults.
# Its settings are the recipe magpie/configs/recipes/llama2-7b.yaml (also: magpie run llama2-7b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-llama2-7b}" exec bash "$here/magpie.sh" "$@"
