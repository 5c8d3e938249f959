#!/usr/bin/env bash
# Tag a records file (exp/unitag.py): difficulty, quality, sample_quality, classification,
# safety, reward, language.
#
#   bash scripts/unitag.sh FILE [mission] [device] [model_path]
#
# mission: one of the above, or a group: all (default; the original's order with
# sample_quality after quality) or magpie (quality, sample_quality, difficulty). Each
# mission writes <stem>_<suffix>.json next to its input and the next one reads it:
# x.json -> x_difficulty.json -> x_difficulty_quality.json -> ... (suffixes _difficulty,
# _quality, _sample_quality, _category, _safety, _reward, _language).
# device: CUDA_VISIBLE_DEVICES (default 0). model_path: the tagger LLM; empty = the
# embedded SmolLM2-135M-Instruct (CPU is fine).
# Environment: GUARD_MODEL_PATH (a Llama-Guard-family model for safety) and
# REWARD_MODEL_PATH (a sequence-classification reward model). With a model_path they
# default to the original's (meta-llama/Meta-Llama-Guard-2-8B,
# sfairXC/FsfairX-LLaMA3-RM-v0.1); with the embedded model they default to none: a
# larger tagger judges safety itself, the embedded one cannot (null labels with the
# reason), and `all` skips reward. Set one to "" to switch it off.
# Also ENGINE, BATCH_SIZE, TENSOR_PARALLEL, GPU_MEMORY_UTILIZATION, SAVE_AS (json|jsonl),
# EXTRA_ARGS. A killed run resumes when rerun with the same arguments.
# Log: <dir of FILE>/tagging.log. Runs from any working directory.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
input_file="${1:?usage: bash scripts/unitag.sh FILE [mission] [device] [model_path]}"
tag_mission="${2:-all}"
device="${3:-0}"
model_path="${4:-}"
if [ -n "$model_path" ]; then
  guard_model_path="${GUARD_MODEL_PATH-meta-llama/Meta-Llama-Guard-2-8B}"
  reward_model_path="${REWARD_MODEL_PATH-sfairXC/FsfairX-LLaMA3-RM-v0.1}"
else
  guard_model_path="${GUARD_MODEL_PATH:-}"
  reward_model_path="${REWARD_MODEL_PATH:-}"
fi
batch_size="${BATCH_SIZE:-64}"
tensor_parallel="${TENSOR_PARALLEL:-1}"
save_as="${SAVE_AS:-json}"
python="${PYTHON:-python3}"

log="$(dirname "$input_file")/tagging.log"
exec > >(tee -a "$log") 2>&1

echo "[unitag.sh] Input: $input_file"
echo "[unitag.sh] Mission: $tag_mission; tagger: ${model_path:-embedded SmolLM2-135M-Instruct}"
if [ -n "$model_path" ]; then no_guard="none (the tagger judges safety)"; else no_guard="none (the embedded tagger cannot judge safety: null with the reason)"; fi
echo "[unitag.sh] Guard: ${guard_model_path:-$no_guard}; reward: ${reward_model_path:-none}"

export CUDA_VISIBLE_DEVICES="$device"
engine_args=()
if [ -n "${ENGINE:-}" ]; then engine_args=(--engine "$ENGINE"); fi
# shellcheck disable=SC2086
"$python" "$repo/exp/unitag.py" \
  --input_file "$input_file" \
  --tag_mission "$tag_mission" \
  --model_path "$model_path" \
  --guard_model_path "$guard_model_path" \
  --reward_model_path "$reward_model_path" \
  --batch_size "$batch_size" \
  --tensor_parallel_size "$tensor_parallel" \
  ${GPU_MEMORY_UTILIZATION:+--gpu_memory_utilization "$GPU_MEMORY_UTILIZATION"} \
  --save_as "$save_as" \
  "${engine_args[@]}" \
  ${EXTRA_ARGS:-}

echo "[unitag.sh] Finished. Log: $log"
