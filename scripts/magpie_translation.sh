#!/usr/bin/env bash
# Control task 'translation': Llama-3-8B-Instruct with the translation system prompt, no newline
# early stop (texts to translate span lines).
# Its settings are the recipe magpie/configs/recipes/translation.yaml (also: magpie run translation).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-translation}" exec bash "$here/magpie.sh" "$@"
