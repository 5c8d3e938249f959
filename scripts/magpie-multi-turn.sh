#!/usr/bin/env bash
# Extend single-turn Magpie records to multi-turn conversations (exp/gen_mt.py).
#
#   bash scripts/magpie-multi-turn.sh FILE [num_turns] [device] [model_path]
#
# FILE is an ..._ins_res.json from magpie.sh; output: <FILE stem>_mt.json next to it.
# With no model_path the embedded SmolLM2-135M-Instruct is used. Extra gen_mt.py options
# go in MT_EXTRA_ARGS. Runs from any working directory.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
input_file="${1:-}"
num_turns="${2:-2}"
device="${3:-0}"
model_path="${4:-}"
python="${PYTHON:-python3}"
if [ -z "$input_file" ] || [ "$input_file" = "none" ] || [ ! -f "$input_file" ]; then
  echo "[magpie-multi-turn.sh] give an existing input file: $0 FILE [num_turns] [device] [model_path]" >&2
  exit 1
fi
log="$(dirname "$input_file")/multi_turn.log"
exec > >(tee -a "$log") 2>&1
echo "[magpie-multi-turn.sh] Input: $input_file; turns: $num_turns; model: ${model_path:-embedded SmolLM2-135M-Instruct}"

export CUDA_VISIBLE_DEVICES="$device"
# shellcheck disable=SC2086
"$python" "$repo/exp/gen_mt.py" \
  --input_file "$input_file" \
  --num_turns "$num_turns" \
  --model_path "$model_path" \
  --tensor_parallel_size "${TENSOR_PARALLEL:-1}" \
  ${GPU_MEMORY_UTILIZATION:+--gpu_memory_utilization "$GPU_MEMORY_UTILIZATION"} \
  --batch_size "${BATCH_SIZE:-64}" \
  ${MT_EXTRA_ARGS:-}
echo "[magpie-multi-turn.sh] Finished. Log: $log"
