#!/usr/bin/env bash
# Gemma-1.1-7b-it: original defaults.
# Its settings are the recipe magpie/configs/recipes/gemma7b.yaml (also: magpie run gemma7b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-gemma7b}" exec bash "$here/magpie.sh" "$@"
