#!/usr/bin/env bash
# Makes the machine ready for the reflink tests of the content catalogs (tests/
# test_content_catalog.py): Debian's xfsprogs (mkfs.xfs), with which the tests make an XFS image
# and loop-mount it (the kernel's XFS does reflinks; ext4 has none). Idempotent and silent when
# it is there; otherwise, as root, installs it once with apt-get.
# Exits 3 when it is missing and cannot be had (not root, no apt-get, apt failed): the tests then
# skip on a developer machine and fail in CI.
set -euo pipefail

command -v mkfs.xfs >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "xfs: mkfs.xfs is missing and not root, so it cannot be installed" \
        "(run: apt-get install xfsprogs)" >&2
    exit 3
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "xfs: mkfs.xfs is missing and there is no apt-get to install xfsprogs with" >&2
    exit 3
fi
echo "xfs: installing Debian's xfsprogs (once)" >&2
# The lock timeout waits for another apt-get (fuse.sh, chromium.sh) instead of failing at once.
if ! { apt-get update -qq -o DPkg::Lock::Timeout=600 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 xfsprogs; } >&2; then
    echo "xfs: apt-get could not install xfsprogs" >&2
    exit 3
fi
command -v mkfs.xfs >/dev/null 2>&1 || { echo "xfs: xfsprogs installed but no mkfs.xfs" >&2; exit 3; }
exit 0
