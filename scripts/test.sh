#!/usr/bin/env bash
# Installs everything (scripts/install.sh, and Debian's Chromium for the test that renders
# timeline pages: scripts/chromium.sh) and runs every check and test: Rust format, lint
# and unit tests, Python lint and types, then the whole pytest suite (integration tests
# included; none may skip in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
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
