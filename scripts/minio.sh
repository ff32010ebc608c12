#!/usr/bin/env bash
# Builds the MinIO server the object-storage tests run against, from source, once: MinIO's
# community edition is distributed as source, so `go install` of a pinned version, kept in a
# cache folder and reused when present. Prints the binary's path; exits 3 when there is no Go
# toolchain to build it with. Concurrent callers (install.sh, the test fixtures) wait for one
# build under a lock instead of racing two builds into the same folder.
set -euo pipefail

MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
CACHE=${RUNLOG_MINIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runlog-store/minio/$MINIO_VERSION}
BINARY="$CACHE/bin/minio"

if [ ! -x "$BINARY" ]; then
    if ! command -v go >/dev/null 2>&1; then
        echo "minio: no Go toolchain to build the MinIO server with" >&2
        exit 3
    fi
    mkdir -p "$CACHE"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$CACHE/.build.lock"
        flock 9
    fi
    # Another caller may have finished the build while this one waited for the lock.
    if [ ! -x "$BINARY" ]; then
        echo "minio: building github.com/minio/minio@$MINIO_VERSION (once; cached in $CACHE)" >&2
        rm -rf "$CACHE/bin.partial"
        GOBIN="$CACHE/bin.partial" CGO_ENABLED=0 go install "github.com/minio/minio@$MINIO_VERSION" >&2
        rm -rf "$CACHE/bin"
        mv "$CACHE/bin.partial" "$CACHE/bin"
    fi
fi
echo "$BINARY"
