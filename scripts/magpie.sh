#!/usr/bin/env bash
# Magpie single-turn job: instructions (exp/gen_ins.py), then responses (exp/gen_res.py).
#
#   bash scripts/magpie.sh [model_path] [total_prompts] [ins_topp] [ins_temp] [res_topp] [res_temp]
#
# With no model_path it uses the embedded SmolLM2-135M-Instruct (no download, CPU is fine)
# with settings for a laptop: 32 prompts, instruction top_p 0.9 (at top_p 1 a third of a
# 135M model's samples ramble past the end of the user turn), at most 256 instruction and
# 512 response tokens, and responses sampled at temperature 0.7, top_p 0.9 with
# frequency penalty 0.3 (greedy answers of a 135M model loop: about half unusable; these
# settings were chosen by bench/sweep_responses.py, see BENCHMARKS.md). With a model it
# uses the original's defaults (1000 prompts, greedy responses).
# Per-model scripts set: DEVICE, TENSOR_PARALLEL, N, BATCH_SIZE, GPU_MEMORY_UTILIZATION,
# INS_EXTRA_ARGS, RES_EXTRA_ARGS. Set TIMESTAMP to resume a killed job (the job folder
# and file names are derived from it); SEED (default: the timestamp) seeds both stages.
# Runs from any working directory; outputs go to DATA_DIR (default: <repo>/data).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model_path="${1:-}"
if [ -z "$model_path" ]; then
  # Responses: EMBEDDED_RESPONSE_DEFAULTS (magpie/responses.py), what gen_res.py uses
  # with no --model_path; passed here because the positional arguments set them too.
  default_total=32 default_ins_topp=0.9 default_res_topp=0.9 default_res_temp=0.7
  INS_EXTRA_ARGS="--max_tokens 256 ${INS_EXTRA_ARGS:-}"
  RES_EXTRA_ARGS="--max_tokens 512 --frequency_penalty 0.3 ${RES_EXTRA_ARGS:-}"
else
  default_total=1000 default_ins_topp=1 default_res_topp=1 default_res_temp=0
fi
total_prompts="${2:-$default_total}"
ins_topp="${3:-$default_ins_topp}"
ins_temp="${4:-1}"
res_topp="${5:-$default_res_topp}"
res_temp="${6:-$default_res_temp}"
res_rep=1
device="${DEVICE:-0}"
tensor_parallel="${TENSOR_PARALLEL:-1}"
# GPU_MEMORY_UTILIZATION unset: the engine's default (0.95 of a GPU; 0.2 of RAM on
# vLLM's CPU build).
n="${N:-200}"
batch_size="${BATCH_SIZE:-64}"
python="${PYTHON:-python3}"

timestamp="${TIMESTAMP:-$(date +%s)}"
seed="${SEED:-$timestamp}"
model_name="$(basename "${model_path:-SmolLM2-135M-Instruct}")"
job_name="${model_name}_topp${ins_topp}_temp${ins_temp}_${timestamp}"
data_dir="${DATA_DIR:-$repo/data}"
job_path="$data_dir/$job_name"
mkdir -p "$job_path"
log="$job_path/$job_name.log"
exec > >(tee -a "$log") 2>&1

echo "[magpie.sh] Model: ${model_path:-embedded SmolLM2-135M-Instruct}"
echo "[magpie.sh] Total prompts: $total_prompts; instruction top_p $ins_topp, temperature $ins_temp"
echo "[magpie.sh] Response top_p $res_topp, temperature $res_temp, repetition penalty $res_rep"
echo "[magpie.sh] Job folder: $job_path"

export CUDA_VISIBLE_DEVICES="$device"
# shellcheck disable=SC2086
"$python" "$repo/exp/gen_ins.py" \
  --model_path "$model_path" \
  --total_prompts "$total_prompts" \
  --top_p "$ins_topp" \
  --temperature "$ins_temp" \
  --tensor_parallel_size "$tensor_parallel" \
  ${GPU_MEMORY_UTILIZATION:+--gpu_memory_utilization "$GPU_MEMORY_UTILIZATION"} \
  --n "$n" \
  --batch_size "$batch_size" \
  --output_folder "$data_dir" \
  --job_name "$job_name" \
  --timestamp "$timestamp" \
  --seed "$seed" \
  ${INS_EXTRA_ARGS:-}

ins_file="$job_path/Magpie_${model_name}_${total_prompts}_${timestamp}_ins.json"
echo "[magpie.sh] Instructions: $ins_file"

# shellcheck disable=SC2086
"$python" "$repo/exp/gen_res.py" \
  --model_path "$model_path" \
  --input_file "$ins_file" \
  --batch_size "$batch_size" \
  --top_p "$res_topp" \
  --temperature "$res_temp" \
  --repetition_penalty "$res_rep" \
  --seed "$seed" \
  --tensor_parallel_size "$tensor_parallel" \
  ${GPU_MEMORY_UTILIZATION:+--gpu_memory_utilization "$GPU_MEMORY_UTILIZATION"} \
  ${RES_EXTRA_ARGS:-}

echo "[magpie.sh] Responses: ${ins_file%.json}_res.json"
echo "[magpie.sh] Finished. Log: $log"
