"""Hostile contents in the catalogs: what someone else who can write into a catalog folder, a
bucket or a manifest leaves there is never followed, restored or trusted beyond the catalog.

- a get gives files the executable bit's meaning only (0o666 or 0o777 under the umask), never
  setuid, setgid or sticky bits, whatever mode the manifest records;
- the sweep of a content catalog never follows a link out of its objects folder;
- names as long as a file system allows round-trip through every catalog (their temp names fit
  too), and a pattern too long for one is a CatalogError naming it;
- reading a catalog's stored files (a get, a copy, a retry's sync) never follows a link;
- the hash cache of a catalog folder is never written through a link.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runlog_store import BaseCatalog, create_catalog, create_store
from runlog_store.catalogs.base import HASH_CACHE_FILE
from runlog_store.catalogs.content import ContentCatalog
from runlog_store.catalogs.content_fs import ContentFileSystemCatalog
from runlog_store.catalogs.content_minio import ContentMinioCatalog
from runlog_store.exceptions import CatalogError
from runlog_store.ops.transfer import copy_run

FOLDER_KINDS = ["file-system", "content-fs"]
CONTENT_KINDS = ["content-fs", "content-minio"]
ALL_KINDS = ["file-system", "content-fs", "minio", "content-minio"]
NAME_MAX = 255


def make_catalog(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, **config: Any
) -> BaseCatalog:
    """A catalog of ``kind`` whose compute folder is ``tmp_path/compute``: in ``tmp_path``'s
    ``catalog`` folder, or in a fresh bucket of the test MinIO server."""
    settings: dict[str, Any] = {"compute_data_folder": str(tmp_path / "compute"), **config}
    if kind in FOLDER_KINDS:
        settings.setdefault("catalog_location", str(tmp_path / "catalog"))
        settings.setdefault("fsync", False)
    else:
        settings.update(request.getfixturevalue("minio_config"))
    return create_catalog(kind, **settings)


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write files a minute old, so the hash cache would record them (it never trusts a file
    modified within the last second)."""
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        past = time.time_ns() - 60 * 10**9
        os.utime(path, ns=(past, past))


def empty_compute(tmp_path: Path) -> Path:
    compute = tmp_path / "compute"
    shutil.rmtree(compute, ignore_errors=True)
    compute.mkdir()
    return compute


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def edit_manifest(catalog: ContentCatalog, run_id: str, path: str, **changes: Any) -> None:
    """Change one entry of a run's manifest behind the catalog's back."""
    if isinstance(catalog, ContentFileSystemCatalog):
        where = catalog.manifest_path(run_id)
        document = json.loads(where.read_bytes())
        document["files"][path].update(changes)
        where.write_text(json.dumps(document))
        return
    assert isinstance(catalog, ContentMinioCatalog)
    key = catalog.manifest_key(run_id)
    found = catalog.storage().get(key)
    assert found is not None
    document = json.loads(found[0])
    document["files"][path].update(changes)
    catalog.storage().put(key, json.dumps(document).encode())


# --- modes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CONTENT_KINDS)
def test_a_get_keeps_only_the_executable_bit_and_obeys_the_umask(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    catalog = make_catalog(request, tmp_path, kind, link="copy")
    assert isinstance(catalog, ContentCatalog)
    compute = empty_compute(tmp_path)
    write_files(compute, {"tool": b"#!/bin/sh\necho hi\n", "shared.txt": b"anyone writes"})
    os.chmod(compute / "tool", 0o4755)
    os.chmod(compute / "shared.txt", 0o666)
    catalog.put("*", run_id="r")
    for mask, tool, shared in [(0o077, 0o700, 0o600), (0o022, 0o755, 0o644)]:
        compute = empty_compute(tmp_path)
        with umask(mask):
            catalog.get("*", run_id="r")
        assert (mode_of(compute / "tool"), mode_of(compute / "shared.txt")) == (tool, shared)
    # A manifest edited to ask for setuid, setgid, sticky and world-writable bits gets none.
    edit_manifest(catalog, "r", "tool", mode=0o6777)
    edit_manifest(catalog, "r", "shared.txt", mode=0o1666)
    compute = empty_compute(tmp_path)
    with umask(0o022):
        catalog.get("*", run_id="r")
        assert (mode_of(compute / "tool"), mode_of(compute / "shared.txt")) == (0o755, 0o644)
        # A whole run put into place for a copy or an export obeys the same rule.
        catalog.download_run("r", tmp_path / "exported")
    assert mode_of(tmp_path / "exported" / "tool") == 0o755
    assert mode_of(tmp_path / "exported" / "shared.txt") == 0o644


@pytest.mark.parametrize("kind", CONTENT_KINDS)
def test_a_manifest_mode_out_of_range_is_a_catalog_error_naming_the_entry(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    catalog = make_catalog(request, tmp_path, kind, link="copy")
    assert isinstance(catalog, ContentCatalog)
    write_files(empty_compute(tmp_path), {"tool": b"#!/bin/sh\n"})
    catalog.put("tool", run_id="r")
    edit_manifest(catalog, "r", "tool", mode=0o170777)
    compute = empty_compute(tmp_path)
    with pytest.raises(CatalogError, match="tool") as caught:
        catalog.get("*", run_id="r")
    assert "mode" in caught.value.message
    assert not (compute / "tool").exists()


def test_a_file_system_catalog_get_gives_no_special_bits_and_obeys_the_umask(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    catalog = make_catalog(request, tmp_path, "file-system")
    compute = empty_compute(tmp_path)
    write_files(compute, {"tool": b"#!/bin/sh\n"})
    os.chmod(compute / "tool", 0o6777)
    catalog.put("tool", run_id="r")
    stored = tmp_path / "catalog" / "r" / "tool"
    assert mode_of(stored) & 0o7022 == 0
    for mask in (0o077, 0o022):
        compute = empty_compute(tmp_path)
        with umask(mask):
            catalog.get("tool", run_id="r")
        got = mode_of(compute / "tool")
        assert got & 0o7000 == 0 and got & mask == 0, oct(got)


# --- the sweep of contents ----------------------------------------------------------------------


def outside_lookalikes(folder: Path) -> list[Path]:
    """Files outside the catalog named as the sweep's patterns match: a content of an objects
    folder and the temp file of a killed writer (old, of a pid that cannot exist)."""
    folder.mkdir(parents=True)
    content = folder / ("c" * 62)
    content.write_bytes(b"precious")
    leftover = folder / ".data.csv.tmp-999999999-1-1"
    leftover.write_bytes(b"also precious")
    past = time.time_ns() - 3600 * 10**9
    for path in (content, leftover):
        os.utime(path, ns=(past, past))
    return [content, leftover]


def test_the_sweep_never_follows_a_linked_content_folder(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    catalog = make_catalog(request, tmp_path, "content-fs")
    assert isinstance(catalog, ContentFileSystemCatalog)
    write_files(empty_compute(tmp_path), {"gone.txt": b"garbage once its run is deleted"})
    catalog.put("gone.txt", run_id="r")
    catalog.delete_run("r")
    victims = outside_lookalikes(tmp_path / "outside")
    link = catalog.objects_folder() / "cc"
    link.symlink_to(tmp_path / "outside")

    dry = catalog.sweep_contents(dry_run=True)
    assert (dry.contents, dry.removed) == (1, 1)
    done = catalog.sweep_contents()
    assert all(path.exists() for path in victims)
    assert (done.contents, done.removed) == (1, 1)
    assert done.refused == [str(link)]
    assert link.is_symlink()


def test_the_sweep_never_follows_a_linked_objects_folder(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    catalog = make_catalog(request, tmp_path, "content-fs")
    assert isinstance(catalog, ContentFileSystemCatalog)
    victims = outside_lookalikes(tmp_path / "outside" / "cc")
    Path(catalog.catalog_location).mkdir()
    catalog.objects_folder().symlink_to(tmp_path / "outside")

    done = catalog.sweep_contents()
    assert all(path.exists() for path in victims)
    assert (done.contents, done.removed) == (0, 0)
    assert done.refused == [str(catalog.objects_folder())]


def test_gc_says_which_links_the_sweep_left_alone(tmp_path: Path) -> None:
    """runlog gc --with-catalog tells the person at the terminal what it would not follow."""
    logs, catalog_folder = tmp_path / "logs", tmp_path / "catalog"
    create_store("file-system", log_folder=str(logs), fsync=False).create_run_log("r")
    compute = empty_compute(tmp_path)
    catalog = create_catalog(
        "content-fs", catalog_location=str(catalog_folder), compute_data_folder=str(compute)
    )
    assert isinstance(catalog, ContentFileSystemCatalog)
    write_files(compute, {"kept.txt": b"kept"})
    catalog.put("kept.txt", run_id="r")
    (tmp_path / "outside").mkdir()
    link = catalog.objects_folder() / "cc"
    link.symlink_to(tmp_path / "outside")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"run-log-store:\n  type: file-system\n  config:\n    log_folder: {logs}\n"
        f"catalog:\n  type: content-fs\n  config:\n    catalog_location: {catalog_folder}\n"
    )
    runlog = str(Path(sys.executable).with_name("runlog"))
    done = subprocess.run(
        [runlog, "gc", "-c", str(config), "--with-catalog", "--dry-run", "--older-than", "1d"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    said = " ".join(done.stderr.split())
    assert f"left alone, not followed: {link}" in said, done.stdout + done.stderr
    assert link.is_symlink()


def test_a_linked_content_folder_is_never_read_or_written_through(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    catalog = make_catalog(request, tmp_path, "content-fs", link="copy")
    assert isinstance(catalog, ContentFileSystemCatalog)
    data = b"stored through a link?"
    write_files(empty_compute(tmp_path), {"a.txt": data})
    digest = catalog.put("a.txt", run_id="r")[0].data_hash.split(":")[-1]
    real = catalog.object_path(digest).parent
    moved = tmp_path / "outside"
    shutil.move(real, moved)
    real.symlink_to(moved)
    with pytest.raises(CatalogError, match=str(real)):
        catalog.get("a.txt", run_id="r")
    shutil.rmtree(moved)
    moved.mkdir()
    with pytest.raises(CatalogError, match=str(real)):
        catalog.put("a.txt", run_id="r2")
    assert list(moved.iterdir()) == []


# --- long names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("name", ["n" * (NAME_MAX - 4) + ".txt", "é" * 127 + "x"])
def test_a_name_as_long_as_the_file_system_allows_round_trips(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, name: str
) -> None:
    assert len(name.encode()) == NAME_MAX
    catalog = make_catalog(request, tmp_path, kind)
    write_files(empty_compute(tmp_path), {name: b"a long name", f"deep/{name}": b"deeper"})
    put = catalog.put("**/*", run_id="r")
    assert sorted(entry.name for entry in put) == sorted([name, f"deep/{name}"])
    compute = empty_compute(tmp_path)
    got = catalog.get("**/*", run_id="r")
    assert sorted(entry.name for entry in got) == sorted(entry.name for entry in put)
    assert (compute / name).read_bytes() == b"a long name"
    assert (compute / "deep" / name).read_bytes() == b"deeper"
    assert sorted(p.name for p in compute.iterdir()) == sorted(["deep", name])
    if kind in FOLDER_KINDS:
        left = [p for p in (tmp_path / "catalog").rglob("*") if ".tmp-" in p.name]
        assert left == []


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_pattern_too_long_for_a_file_name_is_a_catalog_error_naming_it(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    catalog = make_catalog(request, tmp_path, kind)
    write_files(empty_compute(tmp_path), {"a.txt": b"a"})
    catalog.put("a.txt", run_id="r")
    pattern = "p" * 300 + ".txt"
    for glob in (pattern, f"sub/{pattern}"):
        with pytest.raises(CatalogError) as put:
            catalog.put(glob, run_id="r")
        with pytest.raises(CatalogError) as get:
            catalog.get(glob, run_id="r")
        assert glob in put.value.message and glob in get.value.message


# --- links in a catalog's stored files ----------------------------------------------------------


def plant_links(run_folder: Path, outside: Path) -> list[Path]:
    """A link to a file outside the catalog, and a link to a folder outside it, in a run's
    folder of a file-system catalog."""
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not the catalog's")
    links = [run_folder / "stolen.txt", run_folder / "stolen-folder"]
    links[0].symlink_to(outside / "secret.txt")
    links[1].symlink_to(outside)
    return links


def record_run(logs: Path, run_id: str, entries: list[Any]) -> Any:
    store = create_store("chunked-fs", log_folder=str(logs), fsync=False)
    store.create_run_log(run_id)
    step = store.create_step_log("write", "write")
    step.data_catalog.extend(entries)
    step.status = "SUCCESS"
    store.add_step_log(step, run_id)
    store.update_run_log_status(run_id, "SUCCESS")
    return store


def holds_secret(folder: Path) -> bool:
    """Whether a file of ``folder`` (links left out: those planted are there) holds the secret."""
    return any(
        (Path(top) / name).read_bytes() == b"not the catalog's"
        for top, _, names in os.walk(folder)
        for name in names
        if stat.S_ISREG(os.lstat(Path(top) / name).st_mode)
    )


@pytest.mark.parametrize("target_kind", ALL_KINDS)
def test_a_copy_never_takes_what_a_link_in_the_source_catalog_points_to(
    request: pytest.FixtureRequest, tmp_path: Path, target_kind: str
) -> None:
    source = make_catalog(request, tmp_path, "file-system")
    write_files(empty_compute(tmp_path), {"real.txt": b"the run's own"})
    store = record_run(tmp_path / "logs-a", "r", source.put("real.txt", run_id="r"))
    links = plant_links(tmp_path / "catalog" / "r", tmp_path / "outside")
    target_store = create_store("chunked-fs", log_folder=str(tmp_path / "logs-b"), fsync=False)
    place = {"catalog_location": str(tmp_path / "t")} if target_kind in FOLDER_KINDS else {}
    target = make_catalog(request, tmp_path, target_kind, **place)
    with pytest.raises(CatalogError) as caught:
        copy_run(store, target_store, "r", source_catalog=source, target_catalog=target)
    assert any(str(link) in caught.value.message for link in links), caught.value.message
    assert target.run_files("r") == {}
    if target_kind in FOLDER_KINDS:
        assert not holds_secret(tmp_path / "t")


def test_a_copy_from_a_content_catalog_never_reads_a_linked_content(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = make_catalog(request, tmp_path, "content-fs")
    assert isinstance(source, ContentFileSystemCatalog)
    write_files(empty_compute(tmp_path), {"real.txt": b"the run's own"})
    store = record_run(tmp_path / "logs-a", "r", source.put("real.txt", run_id="r"))
    # The stored content swapped for a link to a file of the same size outside the catalog.
    (tmp_path / "outside").mkdir()
    secret = tmp_path / "outside" / "secret.txt"
    secret.write_bytes(b"not the run's")
    stored = source.object_path(source.run_manifest("r")["real.txt"].blake3)
    stored.unlink()
    stored.symlink_to(secret)
    target_store = create_store("chunked-fs", log_folder=str(tmp_path / "logs-b"), fsync=False)
    target = make_catalog(request, tmp_path, "file-system", catalog_location=str(tmp_path / "t"))
    with pytest.raises(CatalogError, match=str(stored)):
        copy_run(store, target_store, "r", source_catalog=source, target_catalog=target)
    assert not (tmp_path / "t").exists() or not any(
        p.read_bytes() == secret.read_bytes() for p in (tmp_path / "t").rglob("*") if p.is_file()
    )


def test_a_get_and_a_sync_never_follow_a_link_in_a_file_system_catalog(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    catalog = make_catalog(request, tmp_path, "file-system")
    write_files(empty_compute(tmp_path), {"real.txt": b"the run's own"})
    catalog.put("real.txt", run_id="r")
    links = plant_links(tmp_path / "catalog" / "r", tmp_path / "outside")
    compute = empty_compute(tmp_path)
    for pattern, link in [("stolen.txt", links[0]), ("stolen-folder/*", links[1]), ("*", None)]:
        with pytest.raises(CatalogError) as caught:
            catalog.get(pattern, run_id="r")
        named = [str(link)] if link else [str(p) for p in links]
        assert any(n in caught.value.message for n in named), caught.value.message
    assert not holds_secret(compute)
    with pytest.raises(CatalogError) as caught:
        catalog.sync_between_runs("r", "retry")
    assert any(str(link) in caught.value.message for link in links), caught.value.message
    assert not holds_secret(tmp_path / "catalog")
    # The run's own file is still there for a get that asks for it alone.
    catalog.get("real.txt", run_id="r")
    assert (compute / "real.txt").read_bytes() == b"the run's own"


def test_a_linked_run_folder_is_never_read(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    catalog = make_catalog(request, tmp_path, "file-system")
    outside = tmp_path / "outside"
    write_files(outside, {"secret.txt": b"not the catalog's"})
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "r").symlink_to(outside)
    empty_compute(tmp_path)
    with pytest.raises(CatalogError, match=str(tmp_path / "catalog" / "r")):
        catalog.get("*", run_id="r")
    with pytest.raises(CatalogError, match=str(tmp_path / "catalog" / "r")):
        catalog.upload_run("copy", tmp_path / "catalog" / "r")
    assert not holds_secret(tmp_path / "compute")


def test_a_put_never_writes_through_a_link_in_a_file_system_catalog(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    catalog = make_catalog(request, tmp_path, "file-system")
    write_files(empty_compute(tmp_path), {"data/a.txt": b"the run's own", "b.txt": b"own too"})
    outside = tmp_path / "outside"
    write_files(outside, {"a.txt": b"not the catalog's", "b.txt": b"not the catalog's"})
    run = tmp_path / "catalog" / "r"
    run.mkdir(parents=True)
    (run / "data").symlink_to(outside)
    with pytest.raises(CatalogError, match=str(run / "data")):
        catalog.put("data/a.txt", run_id="r")
    # A link in a file's own place is replaced by the put, not written through.
    (run / "b.txt").symlink_to(outside / "b.txt")
    catalog.put("b.txt", run_id="r")
    assert (run / "b.txt").read_bytes() == b"own too" and not (run / "b.txt").is_symlink()
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == {
        "a.txt": b"not the catalog's",
        "b.txt": b"not the catalog's",
    }
    # Deleting the run removes a link in its folder's place, never what it points to.
    (tmp_path / "catalog" / "linked").symlink_to(outside)
    assert catalog.delete_run("linked") == 0
    assert not (tmp_path / "catalog" / "linked").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["a.txt", "b.txt"]


# --- the hash cache -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FOLDER_KINDS)
@pytest.mark.parametrize("store_copy", [True, False])
def test_a_linked_hash_cache_is_never_written_through(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, store_copy: bool
) -> None:
    catalog = make_catalog(request, tmp_path, kind)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"someone else's file\n")
    (tmp_path / "catalog").mkdir()
    link = tmp_path / "catalog" / HASH_CACHE_FILE
    link.symlink_to(outside)
    write_files(empty_compute(tmp_path), {"a.txt": b"settled, so the cache would record it"})
    for run_id in ("r", "r2"):
        entries = catalog.put("a.txt", run_id=run_id, store_copy=store_copy)
        assert [e.name for e in entries] == ["a.txt"]
    assert outside.read_bytes() == b"someone else's file\n"
    assert link.is_symlink()
    if store_copy:
        compute = empty_compute(tmp_path)
        catalog.get("a.txt", run_id="r")
        assert (compute / "a.txt").read_bytes() == b"settled, so the cache would record it"
    assert outside.read_bytes() == b"someone else's file\n"
