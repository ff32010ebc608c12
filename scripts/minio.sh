#!/usr/bin/env bash
# Builds the MinIO server the object-storage tests run against, from source, once: MinIO's
# community edition is distributed as source, so `go install` of a pinned version, kept in a
# cache folder and reused when present. Prints the binary's path on stdout, and one line on
# stderr: what it did. The build's output (go's downloads and compiler) goes to a log,
# ~/.cache/runlog-store/logs/minio.log; a failure prints the log's path and its last lines.
# Exits 3 when there is no Go toolchain to build it with. Concurrent callers (install.sh, the
# test fixtures) wait for one build under a lock instead of racing two builds into the same
# folder.
set -euo pipefail

MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
CACHE=${RUNLOG_MINIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runlog-store/minio/$MINIO_VERSION}
BINARY="$CACHE/bin/minio"
LOG_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/runlog-store/logs
LOG="$LOG_DIR/minio.log"
SHOWN_LOG=${LOG/#"$HOME"/\~}

if [ -x "$BINARY" ]; then
    echo "minio: MinIO $MINIO_VERSION already present" >&2
    echo "$BINARY"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "minio: no Go toolchain to build the MinIO server with" >&2
    exit 3
fi
mkdir -p "$CACHE" "$LOG_DIR"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.build.lock"
    flock 9
fi
# Another caller may have finished the build while this one waited for the lock.
if [ -x "$BINARY" ]; then
    echo "minio: MinIO $MINIO_VERSION ready (built by another caller meanwhile)" >&2
    echo "$BINARY"
    exit 0
fi
started=$SECONDS
echo "== $(date -u '+%F %T') go install github.com/minio/minio@$MINIO_VERSION" >>"$LOG"
rm -rf "$CACHE/bin.partial"
status=0
GOBIN="$CACHE/bin.partial" CGO_ENABLED=0 go install "github.com/minio/minio@$MINIO_VERSION" \
    >>"$LOG" 2>&1 || status=$?
if [ "$status" -ne 0 ] || [ ! -x "$CACHE/bin.partial/minio" ]; then
    echo "minio: building MinIO $MINIO_VERSION failed (exit $status); log: $LOG, ending:" >&2
    tail -n 30 "$LOG" | sed 's/^/    /' >&2
    exit 1
fi
rm -rf "$CACHE/bin"
mv "$CACHE/bin.partial" "$CACHE/bin"
echo "minio: MinIO $MINIO_VERSION ready (built from source in $((SECONDS - started))s;" \
    "log: $SHOWN_LOG)" >&2
echo "$BINARY"
