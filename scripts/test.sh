#!/usr/bin/env bash
# Installs everything (scripts/install.sh) and runs every check and test: Rust format, lint
# and unit tests, Python lint and types, then the whole pytest suite (integration tests
# included; none may skip in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
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
