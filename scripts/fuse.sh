#!/usr/bin/env bash
# Makes the machine ready for the power-cut tests (tests/powercut): Debian's fuse3 (fusermount3
# and libfuse3, which the Python binding mfusepy loads), strace (the test of where the stores
# call fsync) and the /dev/fuse device. Idempotent; says in one line on stderr what it did. As
# root, installs what is missing once with apt-get, apt's output going to a log
# (~/.cache/runlog-store/logs/fuse.log); a failure prints the log's path and its last lines.
# Exits 3 when something is missing and cannot be had (not root, no apt-get, apt failed, no
# FUSE in the kernel): the tests then skip on a developer machine and fail in CI.
set -euo pipefail

LOG_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/runlog-store/logs
LOG="$LOG_DIR/fuse.log"
SHOWN_LOG=${LOG/#"$HOME"/\~}

have_libfuse3() {
    ldconfig -p 2>/dev/null | grep -q 'libfuse3\.so\.3 '
}

missing() {
    local packages=()
    { command -v fusermount3 >/dev/null 2>&1 && have_libfuse3; } || packages+=(fuse3)
    command -v strace >/dev/null 2>&1 || packages+=(strace)
    echo "${packages[@]+"${packages[@]}"}"
}

installed=""
packages=$(missing)
if [ -n "$packages" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "fuse: missing $packages and not root, so it cannot be installed" \
            "(run: apt-get install $packages)" >&2
        exit 3
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "fuse: missing $packages and no apt-get to install it with" >&2
        exit 3
    fi
    mkdir -p "$LOG_DIR"
    echo "== $(date -u '+%F %T') apt-get install $packages" >>"$LOG"
    # The lock timeout waits for another apt-get (chromium.sh, a provisioning step) instead of
    # failing at once on dpkg's lock.
    # shellcheck disable=SC2086 # a list of package names
    if ! { apt-get update -qq -o DPkg::Lock::Timeout=600 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -o DPkg::Lock::Timeout=600 $packages; } >>"$LOG" 2>&1; then
        echo "fuse: apt-get could not install $packages; log: $LOG, ending:" >&2
        tail -n 30 "$LOG" | sed 's/^/    /' >&2
        exit 3
    fi
    installed=$packages
    packages=$(missing)
    if [ -n "$packages" ]; then
        echo "fuse: apt-get finished but $packages is still missing; log: $LOG" >&2
        exit 3
    fi
fi

# The device: present on most machines; a container may need it made (as root).
made_device=""
if [ ! -c /dev/fuse ]; then
    modprobe fuse >/dev/null 2>&1 || true
    if [ ! -c /dev/fuse ] && [ "$(id -u)" -eq 0 ] && grep -qw fuse /proc/filesystems; then
        mknod -m 0666 /dev/fuse c 10 229 2>/dev/null || true
        made_device=" (made /dev/fuse)"
    fi
    if [ ! -c /dev/fuse ]; then
        echo "fuse: /dev/fuse is missing and the kernel offers no FUSE to make it from" >&2
        exit 3
    fi
fi
if [ -n "$installed" ]; then
    echo "fuse: installed Debian's $installed for the power-cut tests$made_device" \
        "(log: $SHOWN_LOG)" >&2
else
    echo "fuse: fuse3, strace and /dev/fuse already present$made_device" >&2
fi
exit 0
