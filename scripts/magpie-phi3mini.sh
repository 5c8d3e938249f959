#!/usr/bin/env bash
# Phi-3-mini-128k-instruct: original defaults.
# Its settings are the recipe magpie/configs/recipes/phi3mini.yaml (also: magpie run phi3mini).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-phi3mini}" exec bash "$here/magpie.sh" "$@"
