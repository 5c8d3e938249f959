#!/usr/bin/env bash
# Preference data from instructions: N responses each (exp/gen_po_multi_res.py), reward
# scores (exp/gen_po_rewards.py), then chosen/rejected pairs for DPO (exp/gen_po_pairs.py).
#
#   bash scripts/magpie_example_po.sh [model_path] [input_file] [num_samples] [res_topp] [res_temp]
#
# Defaults: the embedded SmolLM2-135M-Instruct (no download, CPU is fine; responses
# sampled at temperature 0.7, top_p 0.9, frequency penalty 0.3, at most 512 tokens: the
# embedded defaults gen_po_multi_res resolves itself, magpie/stages/gen_res.py),
# data_po/example_instructions.jsonl, 5 samples; with a model_path top_p 1, temperature
# 0.8 (the original's). res_topp and res_temp, when given, replace them.
# Outputs go next to the input, named as the original's:
#   <input stem>_<num_samples>res.json         responses, gen_response_configs
#   <input stem>_<num_samples>res_armorm.json  + rewards [{score}] (rewards_armorm when
#                                              ArmoRM scored them), rewards_model
#   <input stem>_<num_samples>res_armorm_dpo/  train.jsonl, test.jsonl (TRL's DPO form)
# and the log to <input dir>/<job name>.log.
# Environment: REWARD_MODEL_PATH, a single-logit sequence-classification reward model, or
# `judge`: a chat model rates each response 1-5 and the score is its expected rating
# (magpie.judge; rewards_model "judge:<model>"). With a model_path it defaults to
# sfairXC/FsfairX-LLaMA3-RM-v0.1; with the embedded model (no reward model offline) to
# `judge`, the embedded model judging its own responses, so a run with no arguments ends
# with DPO pairs and downloads nothing. JUDGE_MODEL_PATH: another judge (default the
# embedded model). A 135M judge tells a real answer from an empty-ish one, little more:
# for real data use a reward model or a larger judge.
# The original's RLHFlow/ArmoRM-Llama3-8B-v0.1 runs its own code: set TRUST_REMOTE_CODE=1.
# Also DEVICE (CUDA_VISIBLE_DEVICES, default 0), TENSOR_PARALLEL, GPU_MEMORY_UTILIZATION,
# BATCH_SIZE, SEED (default 42), MIN_MARGIN (default 0: ties only), RES_EXTRA_ARGS,
# REWARD_EXTRA_ARGS, PAIRS_EXTRA_ARGS. A killed run resumes when rerun with the same
# arguments. Runs from any working directory.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model_path="${1:-}"
input_file="${2:-$repo/data_po/example_instructions.jsonl}"
num_samples="${3:-5}"
if [ -z "$model_path" ]; then
  reward_model_path="${REWARD_MODEL_PATH:-judge}"
else
  reward_model_path="${REWARD_MODEL_PATH-sfairXC/FsfairX-LLaMA3-RM-v0.1}"
fi
# Sampling given here replaces gen_po_multi_res's defaults, which it resolves itself (the
# embedded model's, or the original's top_p 1 and temperature 0.8 with a model_path).
sampling_args=()
if [ -n "${4:-}" ]; then sampling_args+=(--top_p "$4"); fi
if [ -n "${5:-}" ]; then sampling_args+=(--temperature "$5"); fi
device="${DEVICE:-0}"
tensor_parallel="${TENSOR_PARALLEL:-1}"
batch_size="${BATCH_SIZE:-64}"
seed="${SEED:-42}"
min_margin="${MIN_MARGIN:-0}"
python="${PYTHON:-python3}"
trust_args=()
if [ "${TRUST_REMOTE_CODE:-0}" = "1" ]; then trust_args=(--trust_remote_code); fi
judge_args=()
if [ -n "${JUDGE_MODEL_PATH:-}" ]; then judge_args=(--judge_model_path "$JUDGE_MODEL_PATH"); fi

if [ ! -f "$input_file" ]; then
  echo "[magpie_example_po.sh] input file not found: $input_file" >&2
  exit 2
fi
input_dir="$(cd "$(dirname "$input_file")" && pwd)"
input_stem="$(basename "$input_file")"
input_stem="${input_stem%.*}"
model_name="$(basename "${model_path:-SmolLM2-135M-Instruct}")"
job_name="${input_stem}_${model_name}_${num_samples}res_topp${4:-default}_temp${5:-default}_PO"
log="$input_dir/$job_name.log"
exec > >(tee -a "$log") 2>&1

res_file="$input_dir/${input_stem}_${num_samples}res.json"
reward_file="${res_file%.json}_armorm.json"

echo "[magpie_example_po.sh] Model: ${model_path:-embedded SmolLM2-135M-Instruct}"
echo "[magpie_example_po.sh] Input: $input_file; $num_samples samples, top_p ${4:-default}, temperature ${5:-default}"
if [ "$reward_model_path" = "judge" ]; then
  echo "[magpie_example_po.sh] Reward model: judge (${JUDGE_MODEL_PATH:-embedded SmolLM2-135M-Instruct}, expected 1-5 rating)"
else
  echo "[magpie_example_po.sh] Reward model: ${reward_model_path:-none}"
fi

export CUDA_VISIBLE_DEVICES="$device"
# shellcheck disable=SC2086
"$python" "$repo/exp/gen_po_multi_res.py" \
  --input_file "$input_file" \
  --model_path "$model_path" \
  --num_samples "$num_samples" \
  --batch_size "$batch_size" \
  "${sampling_args[@]}" \
  --seed "$seed" \
  --tensor_parallel_size "$tensor_parallel" \
  ${GPU_MEMORY_UTILIZATION:+--gpu_memory_utilization "$GPU_MEMORY_UTILIZATION"} \
  --output_file "$res_file" \
  ${RES_EXTRA_ARGS:-}
echo "[magpie_example_po.sh] Responses: $res_file"

if [ -z "$reward_model_path" ]; then
  echo "[magpie_example_po.sh] No reward model: set REWARD_MODEL_PATH (a reward model, or judge) to score and pair the responses."
  echo "[magpie_example_po.sh] Finished. Log: $log"
  exit 0
fi

# shellcheck disable=SC2086
"$python" "$repo/exp/gen_po_rewards.py" \
  --input_file "$res_file" \
  --reward_model_path "$reward_model_path" \
  --output_file "$reward_file" \
  "${trust_args[@]}" \
  "${judge_args[@]}" \
  ${REWARD_EXTRA_ARGS:-}
echo "[magpie_example_po.sh] Rewards: $reward_file"

# shellcheck disable=SC2086
"$python" "$repo/exp/gen_po_pairs.py" \
  --input_file "$reward_file" \
  --min_margin "$min_margin" \
  --seed "$seed" \
  ${PAIRS_EXTRA_ARGS:-}
echo "[magpie_example_po.sh] Pairs: ${reward_file%.json}_dpo/"
echo "[magpie_example_po.sh] Finished. Log: $log"
