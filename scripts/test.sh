#!/usr/bin/env bash
# Installs everything (scripts/install.sh; the MinIO server the object-storage tests run
# against: scripts/minio.sh; Debian's Chromium for the test that renders timeline pages:
# scripts/chromium.sh; fuse3 and strace for the power-cut tests: scripts/fuse.sh; xfsprogs for
# the reflink tests: scripts/xfs.sh) and runs every check and test: Rust format, lint
# and unit tests, Python lint and types, then the whole pytest suite (integration tests
# included; none may skip in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
# The MinIO server the object-storage tests run against (built once from source, then cached;
# silent when cached). Without Go the build is skipped on a developer machine (those tests then
# skip), but in CI a missing Go fails the test: no integration test may skip there.
minio_status=0
bash scripts/minio.sh >/dev/null || minio_status=$?
if [ "$minio_status" -ne 0 ]; then
    if [ "$minio_status" -eq 3 ] && [ "${CI:-}" != "true" ]; then
        echo "test: no Go toolchain, MinIO not built; the object-storage tests will skip" >&2
    elif [ "$minio_status" -eq 3 ]; then
        echo "test: CI runs the object-storage tests, which need Go to build MinIO" >&2
        exit 3
    else
        echo "test: building the MinIO server failed (exit $minio_status)" >&2
        exit "$minio_status"
    fi
fi
# Debian's Chromium, for the test that renders `runlog timeline` pages headless (installed
# once with apt-get as root; silent when present). In CI it is required, as MinIO is.
chromium_status=0
bash scripts/chromium.sh >/dev/null || chromium_status=$?
if [ "$chromium_status" -ne 0 ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "test: CI runs the timeline rendering test, which needs Chromium" >&2
        exit "$chromium_status"
    fi
    echo "test: Chromium not installed; the timeline rendering test will skip" >&2
fi
# Debian's fuse3 and strace, for the power-cut tests (tests/powercut: a FUSE filesystem that
# forgets what was never synced, and strace of where each write fsyncs). Installed once with
# apt-get as root; silent when present. In CI they are required, as Chromium is.
fuse_status=0
bash scripts/fuse.sh || fuse_status=$?
if [ "$fuse_status" -ne 0 ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "test: CI runs the power-cut tests, which need FUSE and strace" >&2
        exit "$fuse_status"
    fi
    echo "test: FUSE or strace not available; the power-cut tests will skip" >&2
fi
# Debian's xfsprogs, for the reflink tests of the content catalogs (tests/test_content_catalog.py
# makes and loop-mounts an XFS image). Installed once with apt-get as root; required in CI.
xfs_status=0
bash scripts/xfs.sh || xfs_status=$?
if [ "$xfs_status" -ne 0 ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "test: CI runs the reflink tests, which need xfsprogs" >&2
        exit "$xfs_status"
    fi
    echo "test: xfsprogs not available; the reflink tests will skip" >&2
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/runlog-store/target}
command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt / clippy / test"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features python -- -D warnings
cargo test --quiet

echo "== ruff / mypy"
.venv/bin/ruff check python tests benches
.venv/bin/ruff format --check python tests benches
.venv/bin/mypy

echo "== pytest"
.venv/bin/pytest "$@"
