#!/usr/bin/env bash
# Makes the machine ready for the reflink tests of the content catalogs (tests/
# test_content_catalog.py): Debian's xfsprogs (mkfs.xfs), with which the tests make an XFS image
# and loop-mount it (the kernel's XFS does reflinks; ext4 has none). Idempotent; says in one line
# on stderr what it did. As root, installs it once with apt-get, apt's output going to a log
# (~/.cache/runlog-store/logs/xfs.log); a failure prints the log's path and its last lines.
# Exits 3 when it is missing and cannot be had (not root, no apt-get, apt failed): the tests then
# skip on a developer machine and fail in CI.
set -euo pipefail

LOG_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/runlog-store/logs
LOG="$LOG_DIR/xfs.log"
SHOWN_LOG=${LOG/#"$HOME"/\~}

if command -v mkfs.xfs >/dev/null 2>&1; then
    echo "xfs: xfsprogs (mkfs.xfs) already present" >&2
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "xfs: mkfs.xfs is missing and not root, so it cannot be installed" \
        "(run: apt-get install xfsprogs)" >&2
    exit 3
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "xfs: mkfs.xfs is missing and there is no apt-get to install xfsprogs with" >&2
    exit 3
fi
mkdir -p "$LOG_DIR"
echo "== $(date -u '+%F %T') apt-get install xfsprogs" >>"$LOG"
# The lock timeout waits for another apt-get (fuse.sh, chromium.sh) instead of failing at once.
if ! { apt-get update -qq -o DPkg::Lock::Timeout=600 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 xfsprogs; } >>"$LOG" 2>&1; then
    echo "xfs: apt-get could not install xfsprogs; log: $LOG, ending:" >&2
    tail -n 30 "$LOG" | sed 's/^/    /' >&2
    exit 3
fi
if ! command -v mkfs.xfs >/dev/null 2>&1; then
    echo "xfs: xfsprogs installed but no mkfs.xfs; log: $LOG" >&2
    exit 3
fi
echo "xfs: installed Debian's xfsprogs for the reflink tests (log: $SHOWN_LOG)" >&2
exit 0
