#!/usr/bin/env bash
# DeepSeek-Coder-V2-Lite-Instruct: original defaults.
# Its settings are the recipe magpie/configs/recipes/deepseek-coderv2-lite.yaml (also: magpie run deepseek-coderv2-lite).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-deepseek-coderv2-lite}" exec bash "$here/magpie.sh" "$@"
