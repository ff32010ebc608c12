#!/usr/bin/env bash
# Installs everything runlog-store needs, on a fresh machine or an old one (idempotent):
# the Rust toolchain if missing, a virtualenv in .venv with the pinned Python dependencies,
# and the package itself in editable mode (maturin builds the Rust core). Nothing but Python
# and Rust: what only the tests need (the MinIO server, Chromium, FUSE) scripts/test.sh adds.
# Cargo's build output is kept in ~/.cache/runlog-store so a fresh clone rebuilds fast.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/runlog-store/target}

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        # One line on the terminal; apt-get's own output goes to a log a failure points to.
        log="${XDG_CACHE_HOME:-$HOME/.cache}/runlog-store/logs/install.log"
        mkdir -p "$(dirname "$log")"
        echo "== $(date -u '+%F %T') apt-get install cargo rustc" >>"$log"
        if ! { apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cargo rustc; } >>"$log" 2>&1; then
            echo "install: apt-get could not install cargo and rustc; log: $log, ending:" >&2
            tail -n 30 "$log" | sed 's/^/    /' >&2
            exit 1
        fi
        echo "install: installed Debian's cargo and rustc (log: $log)"
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements/constraints.txt pip
.venv/bin/python -m pip install -q --disable-pip-version-check \
    -c requirements/constraints.txt -e '.[dev]'
# An editable install leaves the package's bytecode to the first import, and a machine that sets
# PYTHONDONTWRITEBYTECODE (many containers do) never writes it: every `runlog` command would
# compile the package again (about 50 ms of each start here). Compiled now, as a wheel install
# compiles; a source changed later is compiled in memory until this runs again.
.venv/bin/python -m compileall -q -j 0 python/runlog_store
echo "install: runlog-store is installed in .venv ($(.venv/bin/python -c 'import runlog_store; print(runlog_store.__version__)'))"
