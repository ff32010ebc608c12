#!/usr/bin/env bash
# Installs everything runlog-store needs, on a fresh machine or an old one (idempotent):
# the Rust toolchain if missing, a virtualenv in .venv with the pinned Python dependencies,
# the package itself in editable mode (maturin builds the Rust core), and the MinIO server
# binary for the object-storage tests (scripts/minio.sh).
# Cargo's build output is kept in ~/.cache/runlog-store so a fresh clone rebuilds fast.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/runlog-store/target}

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "install: no Rust toolchain found; installing Debian's cargo and rustc" >&2
        apt-get update -qq && apt-get install -y -qq cargo rustc
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements/constraints.txt pip
.venv/bin/python -m pip install -q --disable-pip-version-check \
    -c requirements/constraints.txt -e '.[dev]'
# The MinIO server the object-storage tests run against (built once from source, then cached;
# silent when cached). Without Go the build is skipped on a developer machine (those tests then
# skip), but in CI a missing Go fails the install: no integration test may skip there.
minio_status=0
bash scripts/minio.sh >/dev/null || minio_status=$?
if [ "$minio_status" -ne 0 ]; then
    if [ "$minio_status" -eq 3 ] && [ "${CI:-}" != "true" ]; then
        echo "install: no Go toolchain, MinIO not built; the object-storage tests will skip" >&2
    elif [ "$minio_status" -eq 3 ]; then
        echo "install: CI runs the object-storage tests, which need Go to build MinIO" >&2
        exit 3
    else
        echo "install: building the MinIO server failed (exit $minio_status)" >&2
        exit "$minio_status"
    fi
fi
echo "install: runlog-store is installed in .venv ($(.venv/bin/python -c 'import runlog_store; print(runlog_store.__version__)'))"
