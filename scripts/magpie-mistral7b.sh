#!/usr/bin/env bash
# Mistral-7B-Instruct-v0.3: original defaults.
# Its settings are the recipe magpie/configs/recipes/mistral7b.yaml (also: magpie run mistral7b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-mistral7b}" exec bash "$here/magpie.sh" "$@"
