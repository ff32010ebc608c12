"""A large catalog put: 10,000 files of 4 KiB into a new run of the file-system catalog, with
fsync on (the default: one flush per batch, docs/catalogs.md "Durable puts") and off, against
``shutil.copyfile`` of the same files into a fresh folder (no hashing, no fsync).

Rounds are interleaved (copyfile, then the two puts, which take turns going first, each into a
fresh folder) so the machine's load moves them alike, and each measurement starts with nothing
left to write back; every round's ratios are printed and kept in ``extra_info``. Goals: fsync on
<= 1.3x fsync off; fsync off <= copyfile.

    .venv/bin/pytest benches/test_bench_catalog_put.py -q -s --benchmark-only
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from runlog_store import create_catalog

FILES = 10_000
FILE_BYTES = 4096
ROUNDS = 5


@pytest.fixture(scope="module")
def compute(scratch: Path) -> Path:
    folder = scratch / "compute"
    (folder / "small").mkdir(parents=True)
    for i in range(FILES):
        (folder / "small" / f"f{i:05d}.bin").write_bytes(os.urandom(FILE_BYTES))
    os.sync()
    return folder


def _copyfile(compute: Path, target: Path) -> float:
    started = time.perf_counter()
    target.mkdir(parents=True)
    for source in sorted((compute / "small").iterdir()):
        shutil.copyfile(source, target / source.name)
    return time.perf_counter() - started


def _put(compute: Path, location: Path, fsync: bool) -> float:
    catalog = create_catalog(
        "file-system",
        catalog_location=str(location),
        compute_data_folder=str(compute),
        fsync=fsync,
    )
    started = time.perf_counter()
    entries = catalog.put("small/*", run_id="r")
    took = time.perf_counter() - started
    assert len(entries) == FILES
    return took


def test_catalog_put_of_many_small_files(noted: Any, scratch: Path, compute: Path) -> None:
    noted.group = f"catalog-put: {FILES:,} files of 4 KiB into a new run"
    rounds: list[dict[str, float]] = []

    def one_round() -> None:
        n = len(rounds)
        # Each measurement starts with nothing left to write back (os.sync, untimed): a put's
        # flush writes back whatever the file system holds unwritten, and right after the
        # copy and the other put that is their 20,000 files, not this put's. The puts take
        # turns going first.
        os.sync()
        times = {"copyfile": _copyfile(compute, scratch / f"copy-{n}")}
        for fsync in (False, True) if n % 2 == 0 else (True, False):
            os.sync()
            name = "fsync on" if fsync else "fsync off"
            times[name] = _put(compute, scratch / f"{'on' if fsync else 'off'}-{n}", fsync)
        for name in ("copy", "off", "on"):
            shutil.rmtree(scratch / f"{name}-{n}", ignore_errors=True)
        os.sync()  # the next round starts with nothing left to write back
        rounds.append(times)

    # One put first, untimed: the first put of a process also loads the hash cache and starts
    # the copy threads, which no later put pays.
    _put(compute, scratch / "warm-up", False)
    shutil.rmtree(scratch / "warm-up")
    noted.pedantic(one_round, rounds=ROUNDS, iterations=1)
    lines = []
    for n, times in enumerate(rounds):
        on_over_off = times["fsync on"] / times["fsync off"]
        off_over_copy = times["fsync off"] / times["copyfile"]
        noted.extra_info[f"round {n}"] = {k: round(v, 3) for k, v in times.items()}
        lines.append(
            f"round {n}: copyfile {times['copyfile']:.2f} s, put fsync off "
            f"{times['fsync off']:.2f} s, fsync on {times['fsync on']:.2f} s: on/off "
            f"{on_over_off:.2f}x (goal <= 1.3), off/copyfile {off_over_copy:.2f}x (goal <= 1)"
        )
    medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    noted.extra_info["medians"] = {k: round(v, 3) for k, v in medians.items()}
    print("\n" + "\n".join(lines))
