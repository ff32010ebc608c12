"""The hash cache: an unchanged file is not read again; a changed one always is."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import blake3

from runlog_store import hash_file, hash_files

OLD = time.time() - 3600


def _old_file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    os.utime(path, (OLD, OLD))
    return path


def _entries(cache: Path) -> list[list[str]]:
    return [line.split(" ") for line in cache.read_text().splitlines()] if cache.exists() else []


def _plant(cache: Path, path: Path, digest: str) -> None:
    """Rewrite the cache entry of ``path`` to a made-up digest, keeping it well-formed, so a
    later result shows whether the file was read or the cache answered."""
    lines = []
    for fields in _entries(cache):
        body = fields[:-1]
        if int(body[3]) == os.stat(path).st_ino:
            body[8] = digest
        text = " ".join(body)
        lines.append(f"{text} {blake3.blake3(text.encode()).hexdigest()[:8]}")
    cache.write_text("\n".join(lines) + "\n")


def test_unchanged_files_are_answered_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a = _old_file(tmp_path / "a", b"alpha")
    assert hash_files([a], cache=cache) == [hash_file(a)]
    _plant(cache, a, "f" * 64)
    assert hash_files([a], cache=cache) == ["f" * 64]
    assert hash_files([a]) == [hash_file(a)], "without the cache every byte is read"


def test_every_change_is_seen(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fake = "f" * 64
    path = _old_file(tmp_path / "data", b"0123456789")

    def planted() -> str:
        hash_files([path], cache=cache)
        _plant(cache, path, fake)
        return hash_files([path], cache=cache)[0]

    assert planted() == fake
    # touched: a new mtime
    os.utime(path, (OLD + 10, OLD + 10))
    assert hash_files([path], cache=cache) == [hash_file(path)]
    # rewritten in place, same size, mtime put back: the ctime moved
    assert planted() == fake
    stat = os.stat(path)
    with open(path, "r+b") as handle:
        handle.write(b"X")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == stat.st_size
    assert hash_files([path], cache=cache) == [hash_file(path)]
    assert hash_file(path) == blake3.blake3(b"X123456789").hexdigest()
    # replaced by another file (a new inode) with the old times
    assert planted() == fake
    replacement = _old_file(tmp_path / "new", b"9876543210")
    os.replace(replacement, path)
    assert hash_files([path], cache=cache) == [blake3.blake3(b"9876543210").hexdigest()]


def test_fresh_files_are_not_cached(tmp_path: Path) -> None:
    """A file modified less than a second before it was hashed could be rewritten within the
    same timestamp tick, so its digest is not trusted later."""
    cache = tmp_path / "cache"
    fresh = tmp_path / "fresh"
    fresh.write_bytes(b"just written")
    hash_files([fresh], cache=cache)
    assert _entries(cache) == []
    old = _old_file(tmp_path / "old", b"long ago")
    hash_files([old], cache=cache)
    assert len(_entries(cache)) == 1


def test_algorithms_are_cached_apart(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = _old_file(tmp_path / "a", b"abc")
    assert hash_files([path], "sha256", cache=cache) == [hash_file(path, "sha256")]
    assert hash_files([path], "blake3", cache=cache) == [hash_file(path, "blake3")]
    assert sorted(fields[1] for fields in _entries(cache)) == ["blake3", "sha256"]


def _hash_into(cache: str, folder: str, worker: int, barrier: object) -> None:
    paths = [os.path.join(folder, f"w{worker}-{i}") for i in range(100)]
    barrier.wait()  # type: ignore[attr-defined]
    for start in range(0, 100, 10):
        hash_files(paths[start : start + 10], cache=cache)


def test_processes_share_one_cache(tmp_path: Path) -> None:
    """Four processes fill one cache at once: every entry survives and parses."""
    cache = tmp_path / "cache"
    for worker in range(4):
        for i in range(100):
            _old_file(tmp_path / f"w{worker}-{i}", f"{worker}/{i}".encode())
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [
        context.Process(target=_hash_into, args=(str(cache), str(tmp_path), w, barrier))
        for w in range(4)
    ]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(60)
        assert proc.exitcode == 0
    inodes = {int(fields[3]) for fields in _entries(cache)}
    assert len(inodes) == 400
    # and this process reads them: plant one and see it answered
    target = tmp_path / "w3-42"
    _plant(cache, target, "e" * 64)
    assert hash_files([target], cache=cache) == ["e" * 64]
