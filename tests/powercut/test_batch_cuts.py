"""Power cuts landing at each point of a catalog put's one-flush sequence (docs/catalogs.md,
"Durable puts"): every temp file written, one flush, the renames, one fsync per folder.

A random cut (test_powercut.py) seldom lands between two of these steps of one put; here
powerfs turns the power off as a chosen call arrives: before the flush, in the middle of it,
between the flush and the renames, in the middle of the renames, and between the renames and
the folders' fsyncs. On powerfs (FUSE) the flush is an fdatasync of each temp file, issued
after all of them are written (a syncfs may flush nothing there), so the cut can land inside
it too. After each cut:

- every file of the put that returned before holds its bytes;
- the put that was cut did not return, and left no partial file under a final name: each of
  its files holds the bytes it had before (or is absent, for a new one), or its new bytes
  whole. Temp files may remain; listings skip them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from runlog_store import create_catalog, hash_file
from runlog_store.hashing import format_data_hash

from .harness import PowerCutMount, mounted, require_fuse
from .workloads import content_catalog_damage

FILES = 12  # per put: half replace a file of the first put, half are new
WAIT_SECONDS = 60.0

# (name, the call the power goes off at, how many such calls pass first, counted after)
CUT_POINTS = [
    ("before the flush", "fdatasync", 0, None),
    ("in the middle of the flush", "fdatasync", FILES // 2, None),
    ("between the flush and the renames", "rename", 0, None),
    ("in the middle of the renames", "rename", FILES // 2, None),
    ("between the renames and the folders' fsyncs", "fsyncdir", 0, "rename"),
]


@pytest.fixture(scope="module", autouse=True)
def _fuse() -> None:
    require_fuse()


def _digest(path: Path) -> str:
    return format_data_hash("blake3", hash_file(path))


def _write_sources(compute: Path, names: list[str], seed: int) -> dict[str, str]:
    """Write each source with bytes of this seed; their digests by name."""
    digests = {}
    for n, name in enumerate(names):
        path = compute / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([(seed * 31 + n) % 251]) * (3000 + 977 * n + seed))
        digests[name] = _digest(path)
    return digests


def _cut_put(
    mount: PowerCutMount, catalog: Any, pattern: str, run_id: str, writeback: float = 0.0
) -> None:
    """Put ``pattern`` in a forked writer; the power goes off at the call armed before; the
    writer is SIGKILLed and the power comes back. The put must not have returned."""
    context = multiprocessing.get_context("fork")
    done = context.Event()

    def put() -> None:
        try:
            catalog.put(pattern, run_id=run_id)
        except Exception:
            signal.pause()  # the power went off under the put: wait for the SIGKILL
        done.set()
        signal.pause()

    writer = context.Process(target=put, daemon=True)
    writer.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while not mount.stats().get("frozen"):
        assert not done.is_set(), "the put returned: the cut never landed"
        assert time.monotonic() < deadline, "the cut did not land in time"
        time.sleep(0.005)
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    assert not done.is_set(), "the put returned although the power went off under it"
    mount.cut(writeback=writeback, seed=0)


def _names(prefix: str) -> list[str]:
    return [f"{prefix}/{'xyz'[n % 3]}/{n}.bin" for n in range(FILES)]


def _file_system_cut(
    base: Path, call: str, skip: int, after: str | None, *, fsync: bool, writeback: float
) -> list[str]:
    """A put that returned, then a put cut at ``call``: what the disk holds that breaks the
    module's rules (empty when nothing does)."""
    with mounted(base / "power") as mount:
        compute = base / "compute"

        def make_catalog(fsync: bool) -> Any:
            return create_catalog(
                "file-system",
                catalog_location=str(mount.mnt / "catalog"),
                compute_data_folder=str(compute),
                fsync=fsync,
            )

        kept = _names("put")
        first = _write_sources(compute, kept, seed=1)
        returned = {e.name: e.data_hash for e in make_catalog(True).put("put/*/*.bin", run_id="r")}
        assert returned == first
        # The second put replaces half of the first one's files and adds as many new ones.
        replaced = kept[: FILES // 2]
        added = [name.replace("put/", "new/") for name in replaced]
        for name in kept[FILES // 2 :]:
            (compute / name).unlink()
        second = _write_sources(compute, replaced + added, seed=2)
        mount.request(op="cut_at", call=call, skip=skip, after=after)
        _cut_put(mount, make_catalog(fsync), "*/*/*.bin", "r", writeback)

        run = mount.mnt / "catalog" / "r"
        problems = []
        for name in kept:
            held = _digest(run / name) if (run / name).is_file() else "missing"
            if held not in {first[name], second.get(name)}:
                problems.append(f"{name}: the put that returned left {first[name]}, now {held}")
        for name in added:
            if (run / name).exists() and _digest(run / name) != second[name]:
                problems.append(f"{name}: a partial file under its name")
        if not problems:
            assert make_catalog(True).run_files("r").keys() >= set(kept)
            # The next put over the same files works, whatever the cut left (temp files too).
            again = {e.name: e.data_hash for e in make_catalog(True).put("*/*/*.bin", run_id="r")}
            assert again == second
        return problems


@pytest.mark.parametrize("writeback", [0.0, 0.6])
@pytest.mark.parametrize(("point", "call", "skip", "after"), CUT_POINTS)
def test_a_cut_inside_a_file_system_catalog_put(
    point: str, call: str, skip: int, after: str | None, writeback: float, tmp_path: Path
) -> None:
    problems = _file_system_cut(tmp_path, call, skip, after, fsync=True, writeback=writeback)
    assert not problems, f"cut {point}: {problems}"


def test_the_checks_catch_a_put_renamed_before_its_flush(tmp_path: Path) -> None:
    """The same checks fail a put without fsync (its copies are renamed unflushed): a cut in
    the middle of its renames, with part of what was unsynced written back, leaves files
    under their names whose bytes the disk never got."""
    problems = _file_system_cut(tmp_path, "rename", FILES // 2, None, fsync=False, writeback=1.0)
    assert problems, "an unflushed put survived a cut in its renames"


@pytest.mark.parametrize(("point", "call", "skip", "after"), CUT_POINTS)
def test_a_cut_inside_a_content_catalog_put(
    point: str, call: str, skip: int, after: str | None, tmp_path: Path
) -> None:
    with mounted(tmp_path / "power") as mount:
        compute = tmp_path / "compute"

        def make_catalog() -> Any:
            return create_catalog(
                "content-fs",
                catalog_location=str(mount.mnt / "catalog"),
                compute_data_folder=str(compute),
                fsync=True,
            )

        kept = _names("put")
        first = _write_sources(compute, kept, seed=1)
        returned = {e.name: e.data_hash for e in make_catalog().put("put/*/*.bin", run_id="r")}
        assert returned == first
        second = _write_sources(compute, _names("new"), seed=2)
        mount.request(op="cut_at", call=call, skip=skip, after=after)
        _cut_put(mount, make_catalog(), "new/*/*.bin", "r")

        catalog = make_catalog()
        assert catalog.run_files("r").keys() >= {name for name in kept}, f"cut {point}"
        got = tmp_path / "got"
        fetched = create_catalog(
            "content-fs",
            catalog_location=str(mount.mnt / "catalog"),
            compute_data_folder=str(got),
            fsync=True,
        )
        got.mkdir()
        held = {e.name: e.data_hash for e in fetched.get("put/*/*.bin", run_id="r")}
        assert held == first, f"cut {point}"
        assert all(_digest(got / name) == first[name] for name in kept), f"cut {point}"
        assert content_catalog_damage(catalog) == [], f"cut {point}"
        again = {e.name: e.data_hash for e in catalog.put("new/*/*.bin", run_id="r")}
        assert again == second
