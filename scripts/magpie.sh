#!/usr/bin/env bash
# Magpie single-turn job: instructions (gen_ins), then responses (gen_res), as the recipe
# RECIPE says (default: magpie/configs/recipes/default.yaml; the per-model scripts set
# their own). The original's command line:
#
#   bash scripts/magpie.sh [model_path] [total_prompts] [ins_topp] [ins_temp] [res_topp] [res_temp]
#
# An argument given replaces the recipe's value; one left out keeps it. With no recipe
# values and no model_path it runs the embedded SmolLM2-135M-Instruct with its laptop
# defaults (32 prompts, instruction top_p 0.9, 256/512 tokens, responses at temperature
# 0.7, top_p 0.9, frequency penalty 0.3: the stages' embedded defaults, BENCHMARKS.md);
# with a model_path the original's (1000 prompts, greedy responses).
# Environment, as the original's: DEVICE (CUDA_VISIBLE_DEVICES), TENSOR_PARALLEL, N,
# BATCH_SIZE, GPU_MEMORY_UTILIZATION, INS_EXTRA_ARGS and RES_EXTRA_ARGS (flags of
# gen_ins / gen_res). Set TIMESTAMP to resume a killed job (the job folder and file names
# are derived from it); SEED (default: the timestamp) seeds both stages. Outputs go to
# DATA_DIR (default: <repo>/data)/<model>_topp<p>_temp<t>_<timestamp>/, the log to
# <that folder>/magpie.log. Runs from any working directory; the same job as
# `magpie run RECIPE --model_path ... --gen_ins.total_prompts ...`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
recipe="${RECIPE:-default}"
python="${PYTHON:-python3}"
timestamp="${TIMESTAMP:-$(date +%s)}"
data_dir="${DATA_DIR:-$repo/data}"

args=(--timestamp "$timestamp" --seed "${SEED:-$timestamp}" --data_dir "$data_dir")
set_if() { if [ -n "$2" ]; then args+=("$1" "$2"); fi; }
set_if --model_path "${1:-}"
set_if --gen_ins.total_prompts "${2:-}"
set_if --gen_ins.top_p "${3:-}"
set_if --gen_ins.temperature "${4:-}"
set_if --gen_res.top_p "${5:-}"
set_if --gen_res.temperature "${6:-}"
set_if --device "${DEVICE:-}"
set_if --tensor_parallel_size "${TENSOR_PARALLEL:-}"
set_if --gen_ins.n "${N:-}"
set_if --batch_size "${BATCH_SIZE:-}"
set_if --gpu_memory_utilization "${GPU_MEMORY_UTILIZATION:-}"
# A stage's extra flags (--sanitize --max_tokens 1024) become --gen_ins.sanitize ...
stage_flags() {
  local word
  for word in $2; do
    case "$word" in
      --*) args+=("--$1.${word#--}") ;;
      *) args+=("$word") ;;
    esac
  done
}
stage_flags gen_ins "${INS_EXTRA_ARGS:-}"
stage_flags gen_res "${RES_EXTRA_ARGS:-}"

mkdir -p "$data_dir"
log="$data_dir/magpie_${timestamp}.log"
echo "[magpie.sh] recipe $recipe: magpie run $recipe ${args[*]}" | tee -a "$log"
set +e
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$python" -m magpie run "$recipe" "${args[@]}" 2>&1 | tee -a "$log"
status="${PIPESTATUS[0]}"
set -e
# The log joins the job folder the run printed ("[run] gen_ins: <folder>/<file>").
ins_file="$(sed -n 's/^\[run\] gen_ins: //p' "$log" | tail -n 1)"
if [ "$status" = 0 ] && [ -n "$ins_file" ]; then
  job_log="$(dirname "$ins_file")/magpie.log"
  cat "$log" >> "$job_log" && rm -f "$log"
  echo "[magpie.sh] Finished. Log: $job_log"
fi
exit "$status"
