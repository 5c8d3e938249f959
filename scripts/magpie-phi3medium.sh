#!/usr/bin/env bash
# Phi-3-medium-128k-instruct: original defaults.
# Its settings are the recipe magpie/configs/recipes/phi3medium.yaml (also: magpie run phi3medium).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-phi3medium}" exec bash "$here/magpie.sh" "$@"
