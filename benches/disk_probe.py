"""A probe of the disk under the benchmarks: what each way of storing a small write costs now.

This machine's disk (ext4 mounted with ``discard``, as on many cloud VMs) swings between
states: a new file and a rename can cost 30 us when it is quiet and ten times that right after
a burst of writes, while appending to a file the writer already has stays cheap. Every
benchmark run prints this probe beside its ratios, since the ratios move with it.

Run alone: ``python -m benches.disk_probe [folder]`` (default: a scratch folder under the
current directory, which must be on the disk measured, not on a tmpfs).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SIZE = 700  # about a step log
ROUNDS = 200


@dataclass(frozen=True)
class Probe:
    """Median microseconds per write of ``SIZE`` bytes, each way."""

    filesystem: str
    create_rename: float  # new temp file, write, rename over the target (no fsync)
    create_rename_fsync: float  # the same with fsync of the file and of the folder
    append: float  # append to an open file
    append_fdatasync: float  # append and fdatasync

    def line(self) -> str:
        return (
            f"disk probe ({self.filesystem}): create+rename {self.create_rename:.0f} us, "
            f"with fsync {self.create_rename_fsync:.0f} us; append {self.append:.1f} us, "
            f"append+fdatasync {self.append_fdatasync:.0f} us (median of {ROUNDS}, "
            f"{SIZE} bytes)"
        )


def _filesystem(folder: Path) -> str:
    """The mount of ``folder`` as /proc/mounts gives it: type and options."""
    best = ("", "?")
    real = str(folder.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in mounts:
        parts = line.split()
        if len(parts) < 4:
            continue
        mount = parts[1]
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[0]):  # the deepest mount holding the folder
            best = (mount, f"{parts[2]} {parts[3]} on {mount}")
    return best[1]


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def probe(folder: Path) -> Probe:
    """Measure the disk under ``folder`` (a scratch folder is made and removed inside it)."""
    scratch = Path(tempfile.mkdtemp(prefix="disk-probe-", dir=folder))
    data = os.urandom(SIZE)
    try:
        renames: dict[bool, list[float]] = {False: [], True: []}
        for fsync in (False, True):
            for i in range(ROUNDS):
                target = scratch / f"doc-{i % 8}.json"
                temp = scratch / f".doc-{i}.tmp"
                started = time.perf_counter()
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, data)
                if fsync:
                    os.fdatasync(fd)
                os.close(fd)
                os.rename(temp, target)
                if fsync:
                    folder_fd = os.open(scratch, os.O_RDONLY)
                    os.fsync(folder_fd)
                    os.close(folder_fd)
                renames[fsync].append(time.perf_counter() - started)
        appends: dict[bool, list[float]] = {False: [], True: []}
        fd = os.open(scratch / "journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for sync in (False, True):
                for _ in range(ROUNDS):
                    started = time.perf_counter()
                    os.write(fd, data)
                    if sync:
                        os.fdatasync(fd)
                    appends[sync].append(time.perf_counter() - started)
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Probe(
        filesystem=_filesystem(folder),
        create_rename=_median_us(renames[False]),
        create_rename_fsync=_median_us(renames[True]),
        append=_median_us(appends[False]),
        append_fdatasync=_median_us(appends[True]),
    )


if __name__ == "__main__":
    print(probe(Path(sys.argv[1] if len(sys.argv) > 1 else ".")).line())
