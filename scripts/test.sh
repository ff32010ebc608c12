#!/usr/bin/env bash
# Installs everything (scripts/install.sh; the MinIO server the object-storage tests run
# against: scripts/minio.sh; Debian's Chromium for the test that renders timeline pages:
# scripts/chromium.sh; fuse3 and strace for the power-cut tests: scripts/fuse.sh; xfsprogs for
# the reflink tests: scripts/xfs.sh) and runs every check and test: Rust format, lint
# and unit tests, Python lint and types, the documentation site's strict build
# (scripts/docs.sh), then the whole pytest suite (integration tests included; none may skip in
# CI).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
# What only the tests need, each installed once. Each script says in one line what it did (on
# stderr; its stdout, a binary's path, is for the tests' fixtures), and keeps the output of a
# build or apt-get in ~/.cache/runlog-store/logs/, whose path and last lines a failure prints.
# Without one, its tests skip on a developer machine; in CI its absence fails the run: no
# integration test may skip there. `needed SCRIPT TESTS [strict]`: with `strict`, only exit 3
# ("cannot be had here": no Go for MinIO) may skip; any other failure (a broken build) always
# fails.
needed() {
    local status=0
    bash "scripts/$1" >/dev/null || status=$?
    [ "$status" -eq 0 ] && return 0
    if [ "${3:-}" = "strict" ] && [ "$status" -ne 3 ]; then
        echo "test: scripts/$1 failed (exit $status)" >&2
        exit "$status"
    fi
    if [ "${CI:-}" = "true" ]; then
        echo "test: CI runs $2, which need what scripts/$1 installs" >&2
        exit "$status"
    fi
    echo "test: scripts/$1 could not install what $2 need; they will skip" >&2
}
# The MinIO server the object-storage tests run against (built from source with Go, cached).
needed minio.sh "the object-storage tests" strict
# Debian's PostgreSQL server, for the postgres store's tests (each session runs a private cluster).
needed postgres.sh "the PostgreSQL tests" strict
# Debian's Chromium, for the test that renders `runlog timeline` pages headless and the browser
# tests of `runlog serve` (Playwright drives it).
needed chromium.sh "the timeline rendering tests and runlog serve's browser tests"
# Debian's fuse3 and strace, for the power-cut tests (tests/powercut: a FUSE filesystem that
# forgets what was never synced, and strace of where each write fsyncs).
needed fuse.sh "the power-cut tests"
# Debian's xfsprogs, for the reflink tests of the content catalogs (tests/catalogs/test_content_catalog.py
# makes and loop-mounts an XFS image).
needed xfs.sh "the reflink tests"
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

echo "== docs"
bash scripts/docs.sh

echo "== pytest"
.venv/bin/pytest "$@"
