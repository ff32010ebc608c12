#!/usr/bin/env bash
# Prints the path of a headless-capable Chromium for the timeline page tests (they screenshot
# the HTML to check it really draws), and one line on stderr: what it did. Idempotent: an
# existing binary is reused; otherwise, as root, Debian's chromium (plus a font, so text
# renders the same everywhere) is installed once, apt's output going to a log
# (~/.cache/runlog-store/logs/chromium.log); a failure prints the log's path and its last lines.
# Exits 3 when there is no binary and none can be installed (not root, no apt-get, apt failed):
# the tests then skip on a developer machine and fail in CI.
set -euo pipefail

LOG_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/runlog-store/logs
LOG="$LOG_DIR/chromium.log"
SHOWN_LOG=${LOG/#"$HOME"/\~}

# An explicit choice (RUNLOG_CHROMIUM) wins, then Debian's path, then the usual names on PATH.
# "Usable" means it starts: a binary whose libraries are missing (or still being unpacked by
# a running apt-get) does not count. Sets `binary` and `version`.
find_chromium() {
    local candidate path
    for candidate in "${RUNLOG_CHROMIUM:-}" /usr/bin/chromium chromium chromium-browser \
        google-chrome-stable google-chrome; do
        [ -n "$candidate" ] || continue
        path=$(command -v "$candidate" 2>/dev/null) || continue
        [ -f "$path" ] && [ -x "$path" ] || continue
        if version=$(timeout 60 "$path" --version 2>/dev/null); then
            version=${version%% built on*} # "Chromium 131.0.6778.85 built on Debian ..."
            binary=$path
            return 0
        fi
    done
    return 1
}

if find_chromium; then
    echo "chromium: $version already present ($binary)" >&2
    echo "$binary"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "chromium: no chromium found and not root, so it cannot be installed" \
        "(run: apt-get install chromium fonts-dejavu-core)" >&2
    exit 3
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: no chromium found and no apt-get to install it with" >&2
    exit 3
fi

mkdir -p "$LOG_DIR"
echo "== $(date -u '+%F %T') apt-get install chromium fonts-dejavu-core" >>"$LOG"
# The lock timeout makes this wait for another apt-get (install.sh run twice at once, a
# provisioning step) instead of failing at once on dpkg's lock.
if ! { apt-get update -qq -o DPkg::Lock::Timeout=600 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 chromium fonts-dejavu-core; } >>"$LOG" 2>&1; then
    echo "chromium: apt-get could not install chromium; log: $LOG, ending:" >&2
    tail -n 30 "$LOG" | sed 's/^/    /' >&2
    exit 3
fi

if find_chromium; then
    echo "chromium: $version installed from Debian ($binary; log: $SHOWN_LOG)" >&2
    echo "$binary"
    exit 0
fi
echo "chromium: apt-get finished but no chromium binary was found; log: $LOG" >&2
exit 3
