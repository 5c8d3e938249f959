#!/usr/bin/env bash
# Yi-1.5-34B-Chat on 4 GPUs; original defaults.
# Its settings are the recipe magpie/configs/recipes/yi34b.yaml (also: magpie run yi34b).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-yi34b}" exec bash "$here/magpie.sh" "$@"
