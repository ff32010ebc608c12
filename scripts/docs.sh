#!/usr/bin/env bash
# Builds the documentation site (mkdocs.yml, docs/) strictly: a broken link, a missing page, an
# unresolved API reference, or a command line or configuration page that no longer matches the
# code fails the build. Quiet on success (one line); on failure, the build's warnings and errors.
# Usage: bash scripts/docs.sh [site folder]   (default: site/ in the repository; the tests pass
# a folder outside it)
set -euo pipefail
cd "$(dirname "$0")/.."

site=${1:-site}
if [ ! -x .venv/bin/mkdocs ]; then
    echo "docs: no .venv/bin/mkdocs; run: bash scripts/install.sh (it installs the dev extra)" >&2
    exit 2
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --clean --site-dir "$site" >"$log" 2>&1; then
    # mkdocs reports each page it builds at INFO; a failure is in the other lines.
    grep -v '^INFO    -' "$log" >&2 || cat "$log" >&2
    echo "docs: the strict build of the site failed" >&2
    exit 1
fi
echo "docs: built $(find "$site" -name index.html | wc -l) pages into $site"
