#!/usr/bin/env bash
# Run task files (skills generation, tag transformation): bash scripts/run_task.sh TASK.yaml [...]
# Outputs go to DATA_DIR/<task_name>/ (default <repo>/data). Runs from any directory.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ "$#" -ge 1 ] || { echo "usage: $0 TASK.yaml [TASK.yaml ...]" >&2; exit 1; }
exec "${PYTHON:-python3}" "$repo/exp/run_task.py" --task-paths "$@" --output_root "${DATA_DIR:-$repo/data}"
