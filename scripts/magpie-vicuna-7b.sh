#!/usr/bin/env bash
# Vicuna-7b-v1.5: original defaults.
# Its settings are the recipe magpie/configs/recipes/vicuna-7b.yaml (also: magpie run vicuna-7b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-vicuna-7b}" exec bash "$here/magpie.sh" "$@"
