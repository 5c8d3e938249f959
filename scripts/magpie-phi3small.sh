#!/usr/bin/env bash
# Phi-3-small-128k-instruct: original defaults. Its tokenizer is custom code, hence --trust_remote_code
# (the original always trusted remote code).
# Its settings are the recipe magpie/configs/recipes/phi3small.yaml (also: magpie run phi3small).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-phi3small}" exec bash "$here/magpie.sh" "$@"
