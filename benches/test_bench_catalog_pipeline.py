"""The catalog inside a runnable pipeline: one step puts 10,000 files of 4 KiB and one file of
768 MiB, on runnable 0.50's file-system catalog and on runlog-file-system.

Each round is one ``python bulk.py`` (tests/runnable/pipelines/bulk.py) in a fresh folder whose
compute data (hard links to files written once, in the page cache) is ready before the clock
starts; it is timed from start to exit, so runnable's start-up and its recording of 10,001
catalog entries in the step log are in both figures. Each side runs at its defaults: runnable's
chunked-fs store and file-system catalog against runlog-chunked-fs and runlog-file-system (fsync
on); the variants with fsync off, and ours on runnable's chunked-fs store, show where the time
goes (docs/performance.md, "Catalog puts in a pipeline"). The configurations take turns, round
by round, each round in another order; benches/report.py prints each round's ratio.

runnable hashes each file with SHA-256 in Python (4 KiB reads), then copies it (shutil);
runlog-store copies and hashes in one pass in the Rust core, in parallel. Group ``catalog-put``
(benches/report.py prints runnable's time / ours).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.runnable.harness import Project, succeeded

SMALL_FILES = 10_000
SMALL_BYTES = 4 << 10
BIG_BYTES = 768 << 20
_rounds = itertools.count()

# name: (run log store, catalog, catalog settings beyond its location)
CATALOGS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "runnable chunked-fs + file-system (sha256)": ("chunked-fs", "file-system", {}),
    "runlog-chunked-fs + runlog-file-system (blake3, fsync off)": (
        "runlog-chunked-fs",
        "runlog-file-system",
        {"fsync": False},
    ),
    "runlog-chunked-fs + runlog-file-system (sha256, fsync off)": (
        "runlog-chunked-fs",
        "runlog-file-system",
        {"fsync": False, "hash_algorithm": "sha256"},
    ),
    "runnable chunked-fs + runlog-file-system (blake3, fsync on)": (
        "chunked-fs",
        "runlog-file-system",
        {},
    ),
    "runlog-chunked-fs + runlog-file-system (blake3, fsync on)": (
        "runlog-chunked-fs",
        "runlog-file-system",
        {},
    ),
}


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="runlog-bench-catalog-", dir=Path.cwd()))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def data(scratch: Path) -> Path:
    """The files to put, written once."""
    folder = scratch / "data"
    (folder / "small").mkdir(parents=True)
    for i in range(SMALL_FILES):
        (folder / "small" / f"f{i:05d}.bin").write_bytes(os.urandom(SMALL_BYTES))
    with open(folder / "big.bin", "wb") as handle:
        for _ in range(BIG_BYTES >> 24):
            handle.write(os.urandom(1 << 24))
    return folder


def _link_tree(source: Path, target: Path) -> None:
    (target / "small").mkdir(parents=True)
    for path in (source / "small").iterdir():
        os.link(path, target / "small" / path.name)
    os.link(source / "big.bin", target / "big.bin")


ROUNDS = 3
NAMES = list(CATALOGS)
# The rounds take turns, each round in another order (every configuration first once, last
# once...): the disk's state moves from round to round (files made, inodes freed minutes ago),
# and a configuration whose rounds all came first met another disk than the one after it.
INTERLEAVED = [
    (r, NAMES[(r - 1 + i) % len(NAMES)]) for r in range(1, ROUNDS + 1) for i in range(len(NAMES))
]


@pytest.mark.parametrize(("round_", "name"), INTERLEAVED, ids=[f"{n}-{r}" for r, n in INTERLEAVED])
def test_catalog_put_in_a_pipeline(
    benchmark: Any, scratch: Path, data: Path, round_: int, name: str
) -> None:
    benchmark.group = "catalog-put: a step putting 10,000 x 4 KiB + 768 MiB, end to end"
    store_type, catalog_type, catalog_config = CATALOGS[name]
    benchmark.extra_info["role"] = "baseline" if catalog_type == "file-system" else "ours"
    benchmark.extra_info["implementation"] = name
    benchmark.extra_info["round"] = round_
    project = Project(scratch / f"round-{next(_rounds)}")

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        # The rounds' copies stay until the module ends, but for the big file's (one inode):
        # 10,000 files deleted just before a round made its 10,000 creations step over every
        # inode freed in the last minutes (ext4 without a journal, `recently_deleted`), which
        # cost a round 1-4 s; the store benchmarks keep their files for the same reason. About
        # 40 MB a round stay.
        for big in scratch.glob("round-*/**/big.bin"):
            big.unlink()
        _link_tree(data, project.folder)
        config = project.config(
            "bench.yaml",
            store_type,
            {"log_folder": str(project.log_folder)},
            catalog_type,
            {"catalog_location": str(project.catalog_folder), **catalog_config},
        )
        # Every round starts on a disk with nothing left to write back: a syncfs flushes the
        # whole file system, so without this a round with fsync on waited for the writes the
        # rounds before it left in the page cache (runnable's never flushed), not its own.
        os.sync()
        return (project, config), {}

    def run(project: Project, config: Path) -> None:
        succeeded(project.run_sdk("bulk", config, "bulk"))

    benchmark.pedantic(run, setup=setup, rounds=1, iterations=1)
    put = project.folder / ".catalog" / "bulk"
    assert len(list((put / "small").iterdir())) == SMALL_FILES
    assert (put / "big.bin").stat().st_size == BIG_BYTES
