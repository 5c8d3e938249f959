#!/usr/bin/env bash
# Gemma-2-27b-it: 10 samples per prompt, batch 2, no newline early stop, sanitised, 512-token
# instructions; greedy 2048-token responses. (The original forced --engine hf; ours picks the engine.)
# Its settings are the recipe magpie/configs/recipes/gemma2-27b.yaml (also: magpie run gemma2-27b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-gemma2-27b}" exec bash "$here/magpie.sh" "$@"
