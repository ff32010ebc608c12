"""The content catalogs against the per-run ones, ratios from one run.

Groups (benches/report.py prints the baseline's time over ours):
  content-series   10 runs putting the same 400 files of 256 KiB, one changed per run: the
                   file-system catalog against content-fs; the bytes each stores are printed
                   against the distinct contents (goal: content-fs <= 1.2x, file-system 10x)
  content-repeat   a put of those 400 unchanged files into a new run: file-system (copies
                   100 MiB) against content-fs (goal: >= 20x faster)
  content-get      a get of 1 GiB (16 files of 64 MiB): content-fs by copy against by link
                   (hard link: ext4 has no reflinks) (goal: >= 10x faster)
  content-minio    a put of the 400 unchanged files into a new run on one real MinIO server:
                   the minio catalog (uploads 100 MiB) against content-minio (a HEAD each)
  content-new-big  a put of a new 768 MiB file (never seen: hashed, then copied and made
                   durable), file-system against content-fs, three rounds in turns; both
                   write a large copy out to the disk while they copy it (no goal: content-fs
                   should cost what a per-run copy costs)

fsync is on everywhere (the default).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runlog_store import BaseCatalog, create_catalog

FILES = 400
FILE_BYTES = 256 << 10
RUNS = 10
BIG_FILES = 16
BIG_BYTES = 64 << 20  # 16 x 64 MiB = 1 GiB
_runs = itertools.count()


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="runlog-bench-content-", dir=Path.cwd()))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _old(path: Path) -> None:
    past = time.time() - 3600
    os.utime(path, (past, past))


@pytest.fixture(scope="module")
def compute(scratch: Path) -> Path:
    """400 files of 256 KiB, last modified an hour ago (the hash cache may record them)."""
    folder = scratch / "compute"
    (folder / "data").mkdir(parents=True)
    for i in range(FILES):
        path = folder / "data" / f"part-{i:03d}.bin"
        path.write_bytes(os.urandom(FILE_BYTES))
        _old(path)
    return folder


def _catalog(type_name: str, location: Path, compute: Path, **config: Any) -> BaseCatalog:
    return create_catalog(
        type_name, catalog_location=str(location), compute_data_folder=str(compute), **config
    )


def _stored_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (the hash cache, locks and manifests left out: a
    manifest is 150 bytes a file, counted apart)."""
    return sum(
        p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
    )


# --- content-series: what 10 runs store ------------------------------------------------------


def _series(type_name: str, location: Path, compute: Path) -> int:
    """10 runs over the same files, a different one changed before each; the bytes stored."""
    shutil.rmtree(location, ignore_errors=True)
    catalog = _catalog(type_name, location, compute)
    for run in range(RUNS):
        changed = compute / "data" / f"part-{run * 37 % FILES:03d}.bin"
        changed.write_bytes(os.urandom(FILE_BYTES))
        _old(changed)
        catalog.put("data/*.bin", run_id=f"series-{run}")
    return _stored_bytes(location)


# The side-by-side pair of the series and the repeat put: (role, catalog type) by name.
CATALOGS = {
    "file-system catalog": ("baseline", "file-system"),
    "content-fs": ("ours", "content-fs"),
}


@pytest.mark.parametrize("name", list(CATALOGS))
def test_content_series(benchmark: Any, scratch: Path, compute: Path, name: str) -> None:
    benchmark.group = f"content-series: {RUNS} runs putting {FILES} files of 256 KiB, one changed"
    role, type_name = CATALOGS[name]
    benchmark.extra_info["role"] = role
    location = scratch / f"series-{type_name}"
    stored = benchmark.pedantic(
        _series, args=(type_name, location, compute), rounds=1, iterations=1
    )
    distinct = (FILES + RUNS) * FILE_BYTES
    ratio = stored / distinct
    benchmark.extra_info["stored_bytes"] = stored
    benchmark.extra_info["stored_over_distinct"] = round(ratio, 3)
    manifests = _stored_bytes(location / "manifests") if type_name == "content-fs" else 0
    print(
        f"\n{name}: {RUNS} runs stored {stored:,} bytes = {ratio:.2f}x the {distinct:,} bytes of "
        f"distinct contents (manifests: {manifests:,} bytes of it)"
    )
    if type_name == "content-fs":
        assert ratio <= 1.2, f"content-fs stored {ratio:.2f}x the distinct contents"


# --- content-repeat: a put of unchanged files into a new run --------------------------------


@pytest.mark.parametrize("name", list(CATALOGS))
def test_content_repeat_put(benchmark: Any, scratch: Path, compute: Path, name: str) -> None:
    benchmark.group = f"content-repeat: a put of {FILES} unchanged files (100 MiB) into a new run"
    role, type_name = CATALOGS[name]
    benchmark.extra_info["role"] = role
    location = scratch / f"repeat-{type_name}"
    catalog = _catalog(type_name, location, compute)
    catalog.put("data/*.bin", run_id="first")  # the contents (and the hash cache) are there

    def put() -> list[Any]:
        return catalog.put("data/*.bin", run_id=f"repeat-{next(_runs)}")

    result = benchmark.pedantic(put, rounds=5, iterations=1, warmup_rounds=1)
    assert len(result) == FILES
    shutil.rmtree(location, ignore_errors=True)


# --- content-new-big: a new large file, hashed and made durable ------------------------------

NEW_BIG_BYTES = 768 << 20
NEW_BIG_ROUNDS = 3
# Rounds in turns, each pair in the other order than the one before: a copy's writeback left
# to the disk slows whatever comes next, so neither side may always come second.
NEW_BIG_INTERLEAVED = [
    (r, list(CATALOGS)[(r + i) % 2]) for r in range(1, NEW_BIG_ROUNDS + 1) for i in range(2)
]


@pytest.mark.parametrize(
    ("round_", "name"), NEW_BIG_INTERLEAVED, ids=[f"{n}-{r}" for r, n in NEW_BIG_INTERLEAVED]
)
def test_content_put_of_a_new_big_file(noted: Any, scratch: Path, round_: int, name: str) -> None:
    noted.group = "content-new-big: a put of a new 768 MiB file (hashed, copied, durable)"
    role, type_name = CATALOGS[name]
    noted.extra_info["role"] = role
    noted.extra_info["implementation"] = name
    noted.extra_info["round"] = round_
    compute = scratch / f"new-big-{type_name}-{round_}"
    compute.mkdir()
    catalog = _catalog(type_name, scratch / f"new-big-{type_name}", compute)

    def fresh() -> tuple[tuple[()], dict[str, Any]]:
        # A file no round has put: its first bytes name the round.
        block = os.urandom(1 << 20)
        with open(compute / "big.bin", "wb") as out:
            out.write(f"{type_name} {round_} {time.time()}".encode().ljust(64))
            for _ in range(NEW_BIG_BYTES >> 20):
                out.write(block)
        os.sync()  # the file's own writeback is not the put's cost
        return (), {}

    result = noted.pedantic(
        lambda: catalog.put("big.bin", run_id=f"new-big-{round_}"),
        setup=fresh,
        rounds=1,
        iterations=1,
    )
    assert len(result) == 1
    shutil.rmtree(compute)


# --- content-get: 1 GiB by link and by copy ---------------------------------------------------


@pytest.fixture(scope="module")
def big_catalog(scratch: Path) -> Path:
    """A content-fs catalog holding one run of 16 files of 64 MiB."""
    folder = scratch / "big"
    (folder / "compute").mkdir(parents=True)
    for i in range(BIG_FILES):
        with open(folder / "compute" / f"big-{i:02d}.bin", "wb") as out:
            for _ in range(BIG_BYTES >> 24):
                out.write(os.urandom(1 << 24))
    _catalog("content-fs", folder / "catalog", folder / "compute").put("*.bin", run_id="big")
    shutil.rmtree(folder / "compute")
    return folder


GET = {
    "content-fs, link: copy": ("baseline", "copy"),
    "content-fs, link: hardlink": ("ours", "hardlink"),
}


@pytest.mark.parametrize("name", list(GET))
def test_content_get(benchmark: Any, big_catalog: Path, name: str) -> None:
    benchmark.group = f"content-get: a get of 1 GiB ({BIG_FILES} files of 64 MiB)"
    role, link = GET[name]
    benchmark.extra_info["role"] = role
    target = big_catalog / f"got-{link}"
    catalog = _catalog("content-fs", big_catalog / "catalog", target, link=link)

    def fresh() -> tuple[tuple[()], dict[str, Any]]:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        os.sync()  # the last round's writeback is not this round's cost
        return (), {}

    result = benchmark.pedantic(
        lambda: catalog.get("*.bin", run_id="big"), setup=fresh, rounds=5, iterations=1
    )
    assert len(result) == BIG_FILES
    shutil.rmtree(target, ignore_errors=True)


# --- content-minio: a put of unchanged files into a new run -----------------------------------


MINIO = {"minio catalog": ("baseline", "minio"), "content-minio": ("ours", "content-minio")}


@pytest.mark.parametrize("name", list(MINIO))
def test_content_minio_repeat_put(
    benchmark: Any, minio_config: dict[str, str], compute: Path, name: str
) -> None:
    benchmark.group = f"content-minio: a put of {FILES} unchanged files (100 MiB) into a new run"
    role, type_name = MINIO[name]
    benchmark.extra_info["role"] = role
    catalog = create_catalog(type_name, compute_data_folder=str(compute), **minio_config)
    catalog.put("data/*.bin", run_id="first")

    def put() -> list[Any]:
        return catalog.put("data/*.bin", run_id=f"repeat-{next(_runs)}")

    result = benchmark.pedantic(put, rounds=3, iterations=1, warmup_rounds=1)
    assert len(result) == FILES
