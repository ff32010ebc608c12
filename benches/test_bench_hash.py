"""Content hashing and catalog benchmarks, side by side with runnable 0.50 and the blake3 package.

Groups (benches/report.py prints runnable's time / ours, and ours against the blake3 package):
  hash-small  10,000 files of 4 KiB
  hash-big    one file of 768 MiB (under 1 GiB, so runnable hashes every byte too)
  put-again   a catalog put of 1 GiB of unchanged files, the second time, against the cost of
              stat-ing every source and copy (the floor)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest
from runnable.utils import get_data_hash

from runlog_store import create_catalog, hash_files

SMALL_FILES = 10_000
SMALL_BYTES = 4 << 10
BIG_BYTES = 768 << 20
PUT_FILES = 16
PUT_BYTES = 64 << 20  # 16 x 64 MiB = 1 GiB


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="runlog-bench-hash-", dir=Path.cwd()))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def small_files(scratch: Path) -> list[str]:
    folder = scratch / "small"
    folder.mkdir()
    paths = []
    for i in range(SMALL_FILES):
        path = folder / f"f{i:05d}.bin"
        path.write_bytes(os.urandom(SMALL_BYTES))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def big_file(scratch: Path) -> str:
    path = scratch / "big.bin"
    with open(path, "wb") as handle:
        for _ in range(BIG_BYTES >> 24):
            handle.write(os.urandom(1 << 24))
    return str(path)


def _runnable_hash_all(paths: list[str]) -> list[str]:
    return [get_data_hash(p) for p in paths]


def _blake3_package(path: str) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(path)
    return hasher.hexdigest()


SMALL = {
    "runnable get_data_hash (sha256)": ("baseline", _runnable_hash_all),
    "runlog hash_files blake3": ("ours", lambda paths: hash_files(paths)),
    "runlog hash_files sha256": ("ours", lambda paths: hash_files(paths, "sha256")),
}


@pytest.mark.parametrize("name", list(SMALL))
def test_hash_small_files(benchmark: Any, small_files: list[str], name: str) -> None:
    benchmark.group = f"hash-small: {SMALL_FILES:,} files of 4 KiB"
    role, run = SMALL[name]
    benchmark.extra_info["role"] = role
    result = benchmark.pedantic(run, args=(small_files,), rounds=5, iterations=1, warmup_rounds=1)
    assert len(result) == SMALL_FILES


BIG = {
    "runnable get_data_hash (sha256)": ("baseline", get_data_hash),
    "blake3 package, mmap, all threads": ("reference", _blake3_package),
    "runlog hash_file blake3": ("ours", lambda path: hash_files([path])[0]),
    "runlog hash_file sha256": ("ours", lambda path: hash_files([path], "sha256")[0]),
}


@pytest.mark.parametrize("name", list(BIG))
def test_hash_big_file(benchmark: Any, big_file: str, name: str) -> None:
    benchmark.group = "hash-big: one file of 768 MiB"
    role, run = BIG[name]
    benchmark.extra_info["role"] = role
    result = benchmark.pedantic(run, args=(big_file,), rounds=5, iterations=1, warmup_rounds=1)
    assert len(result) == 64


@pytest.fixture(scope="module")
def put_workdir(scratch: Path) -> Path:
    folder = scratch / "put"
    (folder / "data").mkdir(parents=True)
    old = time.time() - 3600
    for i in range(PUT_FILES):
        path = folder / "data" / f"part-{i:02d}.bin"
        with open(path, "wb") as handle:
            for _ in range(PUT_BYTES >> 24):
                handle.write(os.urandom(1 << 24))
        os.utime(path, (old, old))
    return folder


def _put(workdir: Path) -> list[Any]:
    # At the default, fsync on: the hash cache vouches only for copies whose bytes it saw
    # flushed, so with fsync off every put copies the files again (a put's floor is then a copy).
    catalog = create_catalog(
        "file-system",
        catalog_location=str(workdir / "catalog"),
        compute_data_folder=str(workdir / "data"),
    )
    return catalog.put("*.bin", run_id="bench")


def _stat_all(workdir: Path) -> list[Any]:
    sources = sorted((workdir / "data").glob("*.bin"))
    copies = sorted((workdir / "catalog" / "bench").glob("*.bin"))
    return [os.stat(p) for p in sources + copies]


PUT = {
    "os.stat of every source and copy": ("baseline", _stat_all),
    "runlog put, unchanged files": ("ours", _put),
}


@pytest.mark.parametrize("name", list(PUT))
def test_put_of_unchanged_files(benchmark: Any, put_workdir: Path, name: str) -> None:
    benchmark.group = "put-again: catalog put of 1 GiB (16 files), unchanged since the last put"
    role, run = PUT[name]
    benchmark.extra_info["role"] = role
    _put(put_workdir)  # the first put copies and hashes; everything after is unchanged
    result = benchmark.pedantic(run, args=(put_workdir,), rounds=20, iterations=1)
    assert len(result) >= PUT_FILES
