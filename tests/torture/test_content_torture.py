"""The content catalogs under torture: 8 processes putting overlapping contents into their own
runs and one shared run at once, and a putting process SIGKILLed at random moments over and
over. Afterwards every acknowledged put must be in its manifest, every content a manifest names
must be stored and hash to its name (nothing torn), and a sweep must leave nothing behind.

``RUNLOG_TORTURE_KILLS`` sets the kills (default 200, the CI size, as tests/torture/
test_crash.py; content-minio takes a fifth of them: each kill leaves a lease to go stale).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import blake3
import pytest

from runlog_store import create_catalog
from runlog_store.catalogs.content import ContentCatalog

KILLS = int(os.environ.get("RUNLOG_TORTURE_KILLS", "200"))
PROCESSES = 8
ROUNDS = 8
FILES = 24


@pytest.fixture(params=["content-fs", "content-minio"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "content-fs":
        return {"type": "content-fs", "catalog_location": str(tmp_path / "catalog"), "fsync": True}
    return {"type": "content-minio", **request.getfixturevalue("minio_config")}


def catalog_of(config: dict[str, Any], compute: Path) -> ContentCatalog:
    settings = {k: v for k, v in config.items() if k != "type"}
    catalog = create_catalog(config["type"], compute_data_folder=str(compute), **settings)
    assert isinstance(catalog, ContentCatalog)
    return catalog


def content(j: int, version: int) -> bytes:
    """The same bytes for the same (j, version) in every process: contents overlap."""
    seed = blake3.blake3(f"{j}-{version}".encode()).digest()
    return seed * (64 + j * 37)


def stored_bytes(catalog: ContentCatalog, digest: str) -> bytes | None:
    if hasattr(catalog, "object_path"):
        path = catalog.object_path(digest)
        return path.read_bytes() if path.exists() else None
    found = catalog.storage().get(catalog.object_key(digest))  # type: ignore[attr-defined]
    return None if found is None else bytes(found[0])


def damaged_references(catalog: ContentCatalog, verified: set[str] | None = None) -> list[str]:
    """Every manifest entry whose content is missing or does not hash to its name. Contents
    are immutable: one read and hashed before (in ``verified``) is only checked to be there."""
    verified = set() if verified is None else verified
    stored = set(catalog._stored_contents())
    problems = []
    for run_id in catalog._manifest_run_ids():
        for path, entry in (catalog._read_manifest(run_id) or {}).items():
            if entry.blake3 not in stored:
                problems.append(f"{run_id}/{path}: content {entry.blake3[:12]} is missing")
                continue
            if entry.blake3 in verified:
                continue
            data = stored_bytes(catalog, entry.blake3)
            found = None if data is None else blake3.blake3(data).hexdigest()
            if found != entry.blake3:
                problems.append(f"{run_id}/{path}: content {entry.blake3[:12]} holds {found}")
            else:
                verified.add(entry.blake3)
    return problems


# --- 8 processes at once ------------------------------------------------------------------------


def _overlapping_putter(
    config: dict[str, Any], compute: str, p: int, start: Any, results: Any
) -> None:
    catalog = catalog_of(config, Path(compute))
    rng = random.Random(p)
    acked: dict[str, dict[str, str]] = {f"proc-{p}": {}, "shared": {}}
    start.wait()
    for round_ in range(ROUNDS):
        for j in range(FILES):
            path = Path(compute) / f"p{p}" / f"f{j}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content(j, rng.randrange(3)))
        for run_id in (f"proc-{p}", "shared"):
            for entry in catalog.put("p*/*", run_id=run_id):
                acked[run_id][entry.name] = entry.data_hash
        if round_ % 3 == 2:
            catalog.sync_between_runs(f"proc-{p}", f"retry-{p}")
            acked[f"retry-{p}"] = dict(acked[f"proc-{p}"])
    results.put(acked)


def test_processes_putting_overlapping_contents_lose_and_tear_nothing(
    config: dict[str, Any], tmp_path: Path
) -> None:
    context = multiprocessing.get_context("fork")
    start = context.Event()
    results = context.Queue()
    processes = [
        context.Process(
            target=_overlapping_putter,
            args=(config, str(tmp_path / f"compute-{p}"), p, start, results),
        )
        for p in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    start.set()
    acked = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    catalog = catalog_of(config, tmp_path / "compute-check")
    expected: dict[str, dict[str, str]] = {}
    for one in acked:
        for run_id, entries in one.items():
            expected.setdefault(run_id, {}).update(entries)
    assert len(expected["shared"]) == PROCESSES * FILES
    for run_id, entries in expected.items():
        manifest = catalog._read_manifest(run_id) or {}
        recorded = {path: f"blake3:{e.blake3}" for path, e in manifest.items()}
        assert recorded == entries, f"run {run_id}: lost or wrong entries"
    assert damaged_references(catalog) == []
    # Every process's contents overlap: at most 3 versions of each of the FILES contents.
    assert len(catalog._stored_contents()) <= 3 * FILES
    got = catalog.get("p3/*", run_id="shared")
    for entry in got:
        data = (tmp_path / "compute-check" / entry.name).read_bytes()
        assert f"blake3:{blake3.blake3(data).hexdigest()}" == entry.data_hash
    assert catalog.sweep_contents().removed == 0


# --- SIGKILL during puts ------------------------------------------------------------------------


def _killed_putter(config: dict[str, Any], compute: str, start: int, ack: int) -> None:
    """Put new files (half of them contents seen before) until killed; each put that returned
    is said on the pipe as ``<run> <path> <blake3>`` lines."""
    catalog = catalog_of(config, Path(compute))
    rng = random.Random(start)
    i = start
    while True:
        folder = Path(compute) / f"round-{i}"
        folder.mkdir(parents=True)
        for j in range(6):
            version = rng.randrange(4) if j % 2 else i
            (folder / f"f{j}.bin").write_bytes(content(j, version) * (1 + j))
        run_id = f"run-{i % 5}"
        lines = [
            f"{run_id} {e.name} {e.data_hash.removeprefix('blake3:')}"
            for e in catalog.put(f"round-{i}/*", run_id=run_id)
        ]
        os.write(ack, ("\n".join(lines) + "\n").encode())
        i += 1


def test_sigkill_during_puts_leaves_no_manifest_naming_a_missing_content(
    config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kills = KILLS if config["type"] == "content-fs" else max(10, KILLS // 5)
    rng = random.Random(13)
    context = multiprocessing.get_context("fork")
    compute = tmp_path / "compute"
    catalog = catalog_of(config, compute)
    acked: dict[tuple[str, str], str] = {}
    verified: set[str] = set()
    next_round = 0
    for kill in range(kills):
        read_end, write_end = os.pipe()
        writer = context.Process(
            target=_killed_putter, args=(config, str(compute), next_round, write_end)
        )
        writer.start()
        os.close(write_end)
        time.sleep(rng.uniform(0.0, 0.25 if config["type"] == "content-fs" else 0.6))
        os.kill(writer.pid or 0, signal.SIGKILL)
        writer.join()
        data = b""
        while chunk := os.read(read_end, 1 << 16):
            data += chunk
        os.close(read_end)
        for line in data.decode().splitlines():
            run_id, path, digest = line.split()
            acked[(run_id, path)] = digest
        rounds = [int(p.name.split("-")[1]) for p in compute.glob("round-*")]
        next_round = max(rounds, default=next_round) + 1
        problems = damaged_references(catalog, verified)
        assert not problems, f"after kill {kill}: {problems[:3]}"
        run_ids = {run_id for run_id, _ in acked}
        manifests = {run_id: catalog._read_manifest(run_id) or {} for run_id in run_ids}
        for (run_id, path), digest in acked.items():
            entry = manifests[run_id].get(path)
            assert entry is not None and entry.blake3 == digest, (
                f"after kill {kill}: acknowledged {run_id}/{path} is gone"
            )
    assert len(acked) > kills, "the writer got puts done between kills"
    # Leftovers: a killed put leaves at most a temp file (content-fs) or a lease (minio); a
    # sweep removes the first, the second goes stale.
    if config["type"] == "content-minio":
        from runlog_store.catalogs import content_minio

        monkeypatch.setattr(content_minio, "LEASE_SECONDS", 0.5)
        time.sleep(1.0)
    sweep = catalog.sweep_contents()
    assert damaged_references(catalog) == []
    with contextlib.suppress(AttributeError):
        leftovers = [
            p
            for p in catalog.objects_folder().rglob(".*")
            if p.is_file()  # type: ignore[attr-defined]
        ]
        assert leftovers == [], leftovers[:3]
    print(
        f"\n{config['type']}: {kills} kills, {len(acked)} acknowledged entries, none lost; "
        f"sweep removed {sweep.removed} orphaned contents of {sweep.contents}"
    )
