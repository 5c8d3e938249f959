#!/usr/bin/env bash
# Llama-2-70b-chat on 4 GPUs; original defaults (its config entry now exists).
# Its settings are the recipe magpie/configs/recipes/llama2-70b.yaml (also: magpie run llama2-70b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-llama2-70b}" exec bash "$here/magpie.sh" "$@"
