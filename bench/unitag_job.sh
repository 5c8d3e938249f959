#!/bin/sh
# unitag's scored missions on a records file, as scripts/unitag.sh runs them, with the
# package of checkout REPO (to time two versions side by side with farm-bench):
#   sh bench/unitag_job.sh REPO WORKDIR INPUT.json [unitag flags...]
# WORKDIR is emptied first; the outputs and the log stay there.
set -e
repo="$1"; work="$2"; input="$3"; shift 3
rm -rf "$work" && mkdir -p "$work" && cp "$input" "$work/in.json" && cd "$work"
for mission in quality sample_quality; do
  PYTHONPATH="$repo" python "$repo/exp/unitag.py" --input_file in.json --tag_mission "$mission" "$@" >> log 2>&1
done
