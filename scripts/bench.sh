#!/usr/bin/env bash
# Runs the benchmarks side by side with runnable 0.50 and prints the ratio table.
# Usage: bash scripts/bench.sh [pytest args, e.g. -k read]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh >/dev/null
mkdir -p .benchmarks
.venv/bin/pytest benches -q -p no:randomly --benchmark-only --benchmark-json=.benchmarks/latest.json \
    --benchmark-columns=min,median,max,rounds "$@"
.venv/bin/python benches/report.py .benchmarks/latest.json
