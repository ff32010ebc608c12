"""A source that changes while a put reads it is read again, a bounded number of times, before
the put fails (the Rust core's ``hasher::retry_while_changing``): the writer here is a real
process appending to the file while the put runs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from runlog_store import create_catalog, hash_file
from runlog_store.exceptions import RunLogStoreError
from runlog_store.hashing import format_data_hash

# Rewrites the file's 24 MiB, 64 KiB at a time without a pause, for the seconds given (for
# ever with 0), then writes its last bytes and exits; says "started" once the file is whole.
# A read of the file (milliseconds) always overlaps some rewrite, which moves its mtime.
WRITER = """
import os, sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
size, step = 24 << 20, 64 << 10
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"s" * size, 0)
print("started", flush=True)
end = time.monotonic() + seconds
round = 0
while seconds == 0 or time.monotonic() < end:
    block = bytes([round % 251]) * step
    for offset in range(0, size, step):
        os.pwrite(fd, block, offset)
    round += 1
os.pwrite(fd, b"the end", 0)
os.close(fd)
"""


def _writer(path: Path, seconds: float) -> subprocess.Popen[str]:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "started"
    return writer


# content-fs reads a source twice, for its hash then for its store: a writer that rewrites the
# file between the two (after a hash that saw it unchanged) fails the put ("changed since it
# was hashed"); only the file-system catalog, which hashes as it copies, rereads it all.
@pytest.mark.parametrize("kind", ["file-system"])
def test_a_source_a_writer_finishes_during_the_put_is_put_whole(kind: str, tmp_path: Path) -> None:
    compute = tmp_path / "compute"
    compute.mkdir()
    source = compute / "growing.bin"
    catalog = create_catalog(
        kind, catalog_location=str(tmp_path / "catalog"), compute_data_folder=str(compute)
    )
    writer = _writer(source, 0.1)
    try:
        entries = catalog.put("growing.bin", run_id="r")
    finally:
        writer.wait(timeout=30)
    assert writer.returncode == 0
    # The writer stopped within the put's rereads: what was put is the finished file.
    assert entries[0].data_hash == format_data_hash("blake3", hash_file(source))
    got = tmp_path / "got"
    got.mkdir()
    fetched = create_catalog(
        kind, catalog_location=str(tmp_path / "catalog"), compute_data_folder=str(got)
    )
    fetched.get("growing.bin", run_id="r")
    assert (got / "growing.bin").read_bytes() == source.read_bytes()


@pytest.mark.parametrize("kind", ["file-system", "content-fs"])
def test_a_source_that_never_stops_changing_fails_saying_how_often(
    kind: str, tmp_path: Path
) -> None:
    compute = tmp_path / "compute"
    compute.mkdir()
    source = compute / "endless.bin"
    catalog = create_catalog(
        kind, catalog_location=str(tmp_path / "catalog"), compute_data_folder=str(compute)
    )
    writer = _writer(source, 0)
    messages: list[str] = []
    try:
        # A read that fits in a moment the writer was not scheduled (two shared cores) sees a
        # consistent file and the put succeeds, rightly: a few puts are tried.
        for _ in range(5):
            started = time.monotonic()
            try:
                catalog.put("endless.bin", run_id="r")
            except RunLogStoreError as exc:
                messages.append(str(exc))
                took = time.monotonic() - started
                if "reads in a row" in messages[-1]:
                    break
    finally:
        writer.kill()
        writer.wait()
    assert messages, "no put noticed the writer"
    assert all("endless.bin" in m and "changed" in m for m in messages), messages
    # content-fs reads a source twice (its hash, then its store): a change between the two is
    # its own error; the hash's rereads say how many there were.
    reread = [m for m in messages if "reads in a row" in m]
    assert reread or kind == "content-fs", messages
    for message in reread:
        assert "changed on each of 6 reads in a row" in message, message
        # Five waits of 10 to 160 ms between the reads: about 0.3 s, bounded.
        assert 0.3 <= took < 10, took
