"""Power cuts under real writers: with ``fsync: true`` every acknowledged write survives.

A writer process writes through a real store or catalog on powerfs; at a random moment the
power is cut (everything not synced is dropped, or on half the cuts only part of it) and the
writer SIGKILLed at the same instant. Then the run must read, and every write the writer had
been told succeeded must be in it. The same harness shows what is lost without fsync and with
runnable 0.50's own stores, so it is known to be able to fail.

``RUNLOG_POWERCUTS`` sets the cuts per configuration (default 100, the CI size);
``RUNLOG_POWERCUT_DEMO_CUTS`` those of the runs that must lose writes (default 30);
``RUNLOG_POWERCUT_SEED`` the seed. The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import pytest
from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore as RunnableChunkedFs
from extensions.run_log_store.file_system import FileSystemRunLogstore as RunnableFileSystem
from runnable.datastore import JsonParameter as RunnableJsonParameter

from runlog_store import JsonParameter, create_catalog, create_store

from .harness import (
    CUTS,
    SEED,
    PowerCutMount,
    Tally,
    cut_under_writer,
    mounted,
    require_fuse,
)
from .workloads import (
    CatalogRun,
    ContentCatalogRun,
    StoreRun,
    catalog_workload,
    check_hash_cache,
    content_catalog_damage,
    content_catalog_workload,
    document_of,
    store_workload,
)

DEMO_CUTS = int(os.environ.get("RUNLOG_POWERCUT_DEMO_CUTS", "30"))
RUN_EVERY = 10  # cuts per run: later cuts land on a run that already went through some


@pytest.fixture(scope="module", autouse=True)
def _fuse() -> None:
    require_fuse()


def _writer_errors_are_power_loss(errors: list[str], mount: PowerCutMount) -> None:
    assert not errors, f"the writer failed before the cut: {errors}\n{mount.log_tail()}"


def run_store_cuts(
    base: Path, name: str, make_store: Callable[[str], Any], parameter: Any, cuts: int
) -> Tally:
    tally = Tally(name)
    rng = random.Random(f"{SEED}-{name}")
    with mounted(base) as mount:
        log_folder = str(mount.mnt / "logs")
        run: StoreRun | None = None
        for n in range(cuts):
            if run is None or n % RUN_EVERY == 0:
                run = StoreRun(f"run-{n}")
                store = make_store(log_folder)
                store.create_run_log(run.run_id)
                store.add_step_log(store.create_step_log("map", "map"), run.run_id)
                tally.acknowledged += 2
            workload = store_workload(
                lambda: make_store(log_folder), run.run_id, run.next_index, parameter
            )
            cut = cut_under_writer(mount, workload, rng)
            _writer_errors_are_power_loss(cut.errors_before_cut, mount)
            acknowledged = run.take(cut.acks)
            try:
                document = document_of(make_store(log_folder), run.run_id)
            except Exception as exc:
                lost = run.total - len(run.counted)
                problems = [f"run {run.run_id} does not read: {type(exc).__name__}: {exc}"]
                tally.runs_lost += 1
                run = None
            else:
                lost, problems = run.lost(document)
            tally.record(acknowledged, lost, problems)
    tally.report()
    return tally


def _ours(type_name: str, fsync: bool) -> Callable[[str], Any]:
    def make(log_folder: str) -> Any:
        return create_store(type_name, log_folder=log_folder, fsync=fsync)

    return make


RUNNABLE_STORES: dict[str, Callable[[str], Any]] = {
    "file-system": lambda folder: RunnableFileSystem(log_folder=folder),
    "chunked-fs": lambda folder: RunnableChunkedFs(log_folder=folder),
}


@pytest.mark.slow
@pytest.mark.parametrize("type_name", ["file-system", "chunked-fs"])
def test_store_keeps_every_acknowledged_write(type_name: str, tmp_path: Path) -> None:
    tally = run_store_cuts(tmp_path, type_name, _ours(type_name, True), JsonParameter, CUTS)
    assert tally.acknowledged > tally.cuts, "the writers got work done between cuts"
    assert tally.lost == 0, f"{tally.summary()}: {tally.problems}"


@pytest.mark.slow
@pytest.mark.parametrize("type_name", ["file-system", "chunked-fs"])
def test_without_fsync_power_cuts_lose_acknowledged_writes(type_name: str, tmp_path: Path) -> None:
    """The harness can fail: the same writes with ``fsync: false`` are lost."""
    name = f"{type_name} fsync: false"
    tally = run_store_cuts(tmp_path, name, _ours(type_name, False), JsonParameter, DEMO_CUTS)
    assert tally.lost > 0, f"{tally.summary()}: unsynced writes survived every cut"


@pytest.mark.slow
@pytest.mark.parametrize("type_name", ["file-system", "chunked-fs"])
def test_runnable_stores_lose_acknowledged_writes(type_name: str, tmp_path: Path) -> None:
    """runnable 0.50's own stores never fsync: what a power cut costs them (README figures)."""
    name = f"runnable 0.50 {type_name}"
    tally = run_store_cuts(
        tmp_path, name, RUNNABLE_STORES[type_name], RunnableJsonParameter, DEMO_CUTS
    )
    assert tally.lost > 0, f"{tally.summary()}: runnable's unsynced writes survived every cut"


# --- the file-system catalog and its hash cache ---------------------------------------------


@dataclass
class CatalogCuts:
    tally: Tally
    vouched: dict[str, int]  # cache entries found vouching for a file after a cut, per folder
    lies: dict[str, set[str]]  # those vouching for bytes the file does not hold


def run_catalog_cuts(
    base: Path, name: str, *, fsync: bool, cacheable: bool, cuts: int
) -> CatalogCuts:
    """Puts under power cuts. With ``cacheable`` the sources are on the cut disk too, and after
    every cut the hash cache is checked against the catalog's copies and the sources."""
    tally = Tally(name)
    rng = random.Random(f"{SEED}-{name}")
    outcome = CatalogCuts(tally, {"catalog": 0, "compute": 0}, {"catalog": set(), "compute": set()})
    with mounted(base / "power") as mount:
        catalog_root = mount.mnt / "catalog"
        compute = mount.mnt / "compute" if cacheable else base / "compute"
        compute.mkdir()
        mount.sync()

        def make_catalog() -> Any:
            return create_catalog(
                "file-system",
                catalog_location=str(catalog_root),
                compute_data_folder=str(compute),
                fsync=fsync,
            )

        run: CatalogRun | None = None
        for n in range(cuts):
            if run is None or n % RUN_EVERY == 0:
                run = CatalogRun(f"run-{n}")
            workload = catalog_workload(
                make_catalog, compute, run.run_id, run.next_index, cacheable=cacheable
            )
            # With the cache, every other cut comes after the writer's first put returned, so
            # there are recorded entries for the check below to find however slow the machine
            # is (at a fixed delay, a loaded machine once cut every writer before that, and
            # nothing was checked); the others may land inside that first put.
            first_put = ("A ", 1) if cacheable and n % 2 == 0 else None
            cut = cut_under_writer(mount, workload, rng, after_acks=first_put)
            _writer_errors_are_power_loss(cut.errors_before_cut, mount)
            acknowledged = run.take(cut.acks)
            lost, problems = run.lost(catalog_root / run.run_id)
            tally.record(acknowledged, lost, problems)
            if cacheable:
                cache_file = catalog_root / ".runlog-hash-cache"
                for root in (catalog_root, compute):
                    found = check_hash_cache(cache_file, [root], base)
                    outcome.vouched[root.name] += found.vouched
                    outcome.lies[root.name].update(found.lies)
    tally.report()
    if cacheable:
        for where in ("catalog", "compute"):
            lies = sorted(outcome.lies[where])
            print(
                f"  hash cache, files in {where}/: {outcome.vouched[where]} entries vouched for "
                f"a file after a cut, {len(lies)} for bytes the disk had lost"
            )
            for lie in lies[:3]:
                print(f"    e.g. {lie}")
    return outcome


@pytest.mark.slow
def test_catalog_keeps_every_acknowledged_put(tmp_path: Path) -> None:
    tally = run_catalog_cuts(
        tmp_path, "file-system catalog", fsync=True, cacheable=False, cuts=CUTS
    ).tally
    assert tally.acknowledged > tally.cuts, "the writers got work done between cuts"
    assert tally.lost == 0, f"{tally.summary()}: {tally.problems}"


@pytest.mark.slow
def test_catalog_without_fsync_loses_acknowledged_puts(tmp_path: Path) -> None:
    name = "file-system catalog fsync: false"
    tally = run_catalog_cuts(tmp_path, name, fsync=False, cacheable=False, cuts=DEMO_CUTS).tally
    assert tally.lost > 0, f"{tally.summary()}: unsynced copies survived every cut"


@pytest.fixture(scope="module")
def hash_cache_cuts(tmp_path_factory: pytest.TempPathFactory) -> CatalogCuts:
    """One run of puts through the hash cache (sources with old mtimes, so they and their
    copies are cached; each put of every part answers the unchanged ones from the cache)."""
    base = tmp_path_factory.mktemp("hash-cache")
    return run_catalog_cuts(base, "hash cache", fsync=True, cacheable=True, cuts=CUTS)


@pytest.mark.slow
def test_hash_cache_never_vouches_for_a_copy_the_disk_lost(hash_cache_cuts: CatalogCuts) -> None:
    tally = hash_cache_cuts.tally
    assert tally.lost == 0, f"{tally.summary()}: {tally.problems}"
    assert hash_cache_cuts.vouched["catalog"] > 0, "no entry survived a cut: nothing was checked"
    assert not hash_cache_cuts.lies["catalog"], sorted(hash_cache_cuts.lies["catalog"])[:5]


@pytest.mark.slow
def test_hash_cache_never_vouches_for_source_bytes_the_disk_lost(
    hash_cache_cuts: CatalogCuts,
) -> None:
    """The sources are the user's files, never synced by anyone: a cut can leave one with its
    new size and times but its bytes lost (XFS's "NULL files"); an entry recorded for it must
    not then vouch for those bytes."""
    assert hash_cache_cuts.vouched["compute"] > 0, "no entry survived a cut: nothing was checked"
    assert not hash_cache_cuts.lies["compute"], sorted(hash_cache_cuts.lies["compute"])[:5]


def test_the_cache_check_catches_an_entry_that_lies(tmp_path: Path) -> None:
    """The checker itself: an entry forged for a file's exact identity with another digest is
    caught, both from the entries and through hash_files."""
    data = tmp_path / "data"
    data.mkdir()
    path = data / "f.bin"
    path.write_bytes(b"the real bytes")
    st = os.stat(path)
    identity = f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"
    body = f"1 blake3 {identity} 0 {'0' * 64}"
    cache = tmp_path / ".runlog-hash-cache"
    cache.write_text(f"{body} {blake3.blake3(body.encode()).hexdigest()[:8]}\n")
    found = check_hash_cache(cache, [data], tmp_path)
    assert (found.files, found.vouched, len(found.lies)) == (1, 1, 2), found


# --- the content catalog --------------------------------------------------------------------


def run_content_catalog_cuts(base: Path, name: str, *, fsync: bool, cuts: int) -> Tally:
    """Puts into content-fs under power cuts: after each, every acknowledged put must be in its
    run's manifest, and no manifest may name a content that is not stored whole."""
    tally = Tally(name)
    rng = random.Random(f"{SEED}-{name}")
    damage: list[str] = []
    with mounted(base / "power") as mount:
        catalog_root = mount.mnt / "catalog"
        compute = base / "compute"
        compute.mkdir()

        def make_catalog() -> Any:
            return create_catalog(
                "content-fs",
                catalog_location=str(catalog_root),
                compute_data_folder=str(compute),
                fsync=fsync,
            )

        run: ContentCatalogRun | None = None
        for n in range(cuts):
            if run is None or n % RUN_EVERY == 0:
                run = ContentCatalogRun(f"run-{n}")
            workload = content_catalog_workload(make_catalog, compute, run.run_id, run.next_index)
            cut = cut_under_writer(mount, workload, rng)
            _writer_errors_are_power_loss(cut.errors_before_cut, mount)
            acknowledged = run.take(cut.acks)
            lost, problems = run.lost_in(make_catalog())
            found = [f for f in content_catalog_damage(make_catalog()) if f not in damage]
            damage.extend(found)
            tally.record(acknowledged, lost + len(found), problems + found)
            if any("does not read" in problem for problem in problems):
                tally.runs_lost += 1
                run = None  # its manifest is gone: the next cuts write a new run
    tally.report()
    print(f"  manifests naming a missing or damaged content after a cut: {len(damage)}")
    return tally


@pytest.mark.slow
def test_content_catalog_keeps_every_acknowledged_put_and_names_only_stored_contents(
    tmp_path: Path,
) -> None:
    tally = run_content_catalog_cuts(tmp_path, "content-fs catalog", fsync=True, cuts=CUTS)
    assert tally.acknowledged > tally.cuts, "the writers got work done between cuts"
    assert tally.lost == 0, f"{tally.summary()}: {tally.problems}"


@pytest.mark.slow
def test_content_catalog_without_fsync_loses_puts(tmp_path: Path) -> None:
    """The harness can fail the content catalog: without fsync, cuts lose acknowledged puts
    (or leave manifests naming contents the disk lost)."""
    name = "content-fs catalog fsync: false"
    tally = run_content_catalog_cuts(tmp_path, name, fsync=False, cuts=DEMO_CUTS)
    assert tally.lost > 0, f"{tally.summary()}: unsynced puts survived every cut"
