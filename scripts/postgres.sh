#!/usr/bin/env bash
# Makes the machine ready for the PostgreSQL tests (the postgres store, tests/postgres_server.py
# starts a private cluster of its own for them): Debian's PostgreSQL server binaries. Prints the
# folder of those binaries (initdb, pg_ctl, postgres) on stdout, and one line on stderr: what it
# did. Idempotent. As root, installs the server once with apt-get, apt's output going to a log
# (~/.cache/runlog-store/logs/postgres.log); a failure prints the log's path and its last lines.
# Exits 3 when the server is missing and cannot be had (not root, no apt-get, apt failed): the
# tests then skip on a developer machine and fail in CI.
set -euo pipefail

LOG_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/runlog-store/logs
LOG="$LOG_DIR/postgres.log"
SHOWN_LOG=${LOG/#"$HOME"/\~}

# The newest installed server's bin folder (Debian keeps each major version apart), or nothing.
bin_dir() {
    local dir
    while IFS= read -r dir; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
            echo "$dir"
            return 0
        fi
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4 -n -r)
    return 0
}

found=$(bin_dir)
if [ -n "$found" ]; then
    echo "postgres: PostgreSQL server present ($found)" >&2
    echo "$found"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "postgres: no PostgreSQL server and not root, so it cannot be installed" \
        "(run: apt-get install postgresql)" >&2
    exit 3
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "postgres: no PostgreSQL server and no apt-get to install it with" >&2
    exit 3
fi
mkdir -p "$LOG_DIR"
echo "== $(date -u '+%F %T') apt-get install postgresql" >>"$LOG"
# The lock timeout waits for another apt-get (fuse.sh, chromium.sh) instead of failing at once
# on dpkg's lock. The package's own cluster is not wanted (the tests start theirs): it is
# created by the package's scripts, and left stopped where no init system runs.
if ! { apt-get update -qq -o DPkg::Lock::Timeout=600 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 postgresql; } >>"$LOG" 2>&1; then
    echo "postgres: apt-get could not install postgresql; log: $LOG, ending:" >&2
    tail -n 30 "$LOG" | sed 's/^/    /' >&2
    exit 3
fi
found=$(bin_dir)
if [ -z "$found" ]; then
    echo "postgres: apt-get finished but no server binaries are in /usr/lib/postgresql; log: $LOG" >&2
    exit 3
fi
echo "postgres: installed Debian's PostgreSQL ($found; log: $SHOWN_LOG)" >&2
echo "$found"
