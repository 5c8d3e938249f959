#!/bin/sh
# Issue 26's tagging baseline: unitag's quality mission on a records file and its
# sample_quality mission on the first 8 records, two processes, with the package of
# checkout REPO (to time two versions side by side with farm-bench):
#   sh bench/unitag_baseline.sh REPO WORKDIR INPUT.json [unitag flags...]
# WORKDIR is emptied first; the outputs and the log stay there.
set -e
repo="$1"; work="$2"; input="$3"; shift 3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
python -c "import json,sys; r=json.load(open(sys.argv[1])); json.dump(r,open('in.json','w')); json.dump(r[:8],open('in8.json','w'))" "$input"
PYTHONPATH="$repo" python "$repo/exp/unitag.py" --input_file in.json --tag_mission quality "$@" >> log 2>&1
PYTHONPATH="$repo" python "$repo/exp/unitag.py" --input_file in8.json --tag_mission sample_quality "$@" >> log 2>&1
