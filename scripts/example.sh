#!/usr/bin/env bash
# The main job: runs the example runnable pipeline (examples/pipeline.py: a map of 16 branches
# in worker processes, a parallel step, a fan-in, files through the catalog) with runnable 0.50
# on runlog-store, then shows the run with `runlog show`.
#
# The pipeline's configuration (examples/runnable-config.yaml) is runnable's own with one word
# changed per service (runlog-chunked-fs, runlog-file-system) and the default folders, which
# are runlog's embedded default: `runlog` finds the run there with no configuration at all.
# Needs the virtualenv: bash scripts/install.sh
# Usage: bash scripts/example.sh [number of branches]
set -euo pipefail
cd "$(dirname "$0")/../examples"

if [ ! -x ../.venv/bin/runnable ]; then
    echo "example: no .venv with runnable; run: bash scripts/install.sh" >&2
    exit 2
fi
run_id="example-$(date +%Y%m%d-%H%M%S)-$$"
output="runnable-output.log"
echo "example: running examples/pipeline.py with runnable as run $run_id (its output: examples/$output)"
if ! RUNNABLE_RUN_ID="$run_id" RUNNABLE_PRM_branches="${1:-16}" \
        ../.venv/bin/python pipeline.py >"$output" 2>&1; then
    tail -n 40 "$output" >&2
    echo "example: the pipeline failed; its output is in examples/$output" >&2
    exit 1
fi
../.venv/bin/runlog show "$run_id" --max-branches 2
echo
echo "The run log is in examples/.run_log_store/$run_id/ and the catalog in examples/.catalog/$run_id/."
echo "See it again with: (cd $(printf %q "$PWD") && ../.venv/bin/runlog show $run_id)"
