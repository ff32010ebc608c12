#!/usr/bin/env bash
# Makes the machine ready for the power-cut tests (tests/powercut): Debian's fuse3 (fusermount3
# and libfuse3, which the Python binding mfusepy loads), strace (the test of where the stores
# call fsync) and the /dev/fuse device. Idempotent and silent when all is there; otherwise, as
# root, installs what is missing once with apt-get.
# Exits 3 when something is missing and cannot be had (not root, no apt-get, apt failed, no
# FUSE in the kernel): the tests then skip on a developer machine and fail in CI.
set -euo pipefail

have_libfuse3() {
    ldconfig -p 2>/dev/null | grep -q 'libfuse3\.so\.3 '
}

missing() {
    local packages=()
    { command -v fusermount3 >/dev/null 2>&1 && have_libfuse3; } || packages+=(fuse3)
    command -v strace >/dev/null 2>&1 || packages+=(strace)
    echo "${packages[@]+"${packages[@]}"}"
}

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
    echo "fuse: installing Debian's $packages (once)" >&2
    # The lock timeout waits for another apt-get (chromium.sh, a provisioning step) instead of
    # failing at once on dpkg's lock.
    # shellcheck disable=SC2086 # a list of package names
    if ! { apt-get update -qq -o DPkg::Lock::Timeout=600 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -o DPkg::Lock::Timeout=600 $packages; } >&2; then
        echo "fuse: apt-get could not install $packages" >&2
        exit 3
    fi
    packages=$(missing)
    if [ -n "$packages" ]; then
        echo "fuse: apt-get finished but $packages is still missing" >&2
        exit 3
    fi
fi

# The device: present on most machines; a container may need it made (as root).
if [ ! -c /dev/fuse ]; then
    modprobe fuse >/dev/null 2>&1 || true
    if [ ! -c /dev/fuse ] && [ "$(id -u)" -eq 0 ] && grep -qw fuse /proc/filesystems; then
        mknod -m 0666 /dev/fuse c 10 229 || true
    fi
    if [ ! -c /dev/fuse ]; then
        echo "fuse: /dev/fuse is missing and the kernel offers no FUSE to make it from" >&2
        exit 3
    fi
fi
exit 0
