"""The file-system catalog: runnable's layout, atomic copies hashed in the same pass and the
hash cache, progress; catalog types and configuration; the glob of object names.

What every catalog owes is checked once, by the contract (``runlog_store.testing.
CatalogContract``, run for every catalog type by tests/contract/test_contract.py).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from runlog_store import catalog_types, create_catalog, load_catalog
from runlog_store.callbacks import RecordingCallback
from runlog_store.catalogs.base import glob_regex
from runlog_store.catalogs.file_system import FileSystemCatalog
from runlog_store.exceptions import ConfigurationError, StorageError

from ..terminal import run_with_terminal_stderr


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "data" / "b.csv").write_text("x,y\n3,4\n")
    (tmp_path / "data" / "deep").mkdir()
    (tmp_path / "data" / "deep" / "c.txt").write_text("deep")
    return tmp_path


def _catalog(**config: object) -> FileSystemCatalog:
    catalog = create_catalog("file-system", fsync=False, **config)
    assert isinstance(catalog, FileSystemCatalog)
    return catalog


def test_types_are_registered_through_entry_points() -> None:
    assert {"do-nothing", "file-system"} <= set(catalog_types())
    assert create_catalog("do-nothing").put("x", run_id="r") == []


def test_put_copies_into_runnables_layout(workdir: Path) -> None:
    """By default the catalog is runnable's ``.catalog`` folder, a run's copies under
    ``<run_id>/``, and an atomic copy leaves no temp file behind."""
    entries = _catalog().put("data/*.csv", run_id="run-1")
    assert [e.name for e in entries] == ["data/a.csv", "data/b.csv"]
    assert {e.catalog_handler_location for e in entries} == {".catalog"}
    assert (workdir / ".catalog" / "run-1" / "data" / "a.csv").read_text() == "x,y\n1,2\n"
    leftovers = [p for p in (workdir / ".catalog").rglob(".*tmp*")]
    assert leftovers == []


def test_compute_data_folder_layout_is_runnables(workdir: Path) -> None:
    catalog = _catalog(compute_data_folder="data")
    entries = catalog.put("**/*.txt", run_id="r")
    assert [e.name for e in entries] == ["deep/c.txt"]
    assert entries[0].catalog_relative_path == "r/deep/c.txt"
    assert (workdir / ".catalog" / "r" / "data" / "deep" / "c.txt").read_text() == "deep"
    (workdir / "data" / "deep" / "c.txt").unlink()
    got = catalog.get("deep/*", run_id="r")
    assert got[0].stage == "get" and got[0].catalog_relative_path == "deep/c.txt"
    assert (workdir / "data" / "deep" / "c.txt").read_text() == "deep"


def test_second_put_of_unchanged_files_copies_nothing(workdir: Path) -> None:
    old = time.time() - 3600
    for path in (workdir / "data").rglob("*"):
        os.utime(path, (old, old))
    # Only copies fsynced to disk are vouched for by the cache (docs/format.md, "The hash cache").
    catalog = create_catalog("file-system", fsync=True)
    first = catalog.put("data/*.csv", run_id="r")
    copy = workdir / ".catalog" / "r" / "data" / "a.csv"
    inode = os.stat(copy).st_ino
    second = catalog.put("data/*.csv", run_id="r")
    assert [e.data_hash for e in second] == [e.data_hash for e in first]
    assert os.stat(copy).st_ino == inode, "the copy was not rewritten"
    (workdir / "data" / "a.csv").write_text("x,y\n9,9\n")
    third = catalog.put("data/*.csv", run_id="r")
    assert os.stat(copy).st_ino != inode
    assert copy.read_text() == "x,y\n9,9\n"
    assert third[0].data_hash != first[0].data_hash


def test_without_fsync_a_copy_is_not_trusted_and_is_made_again(workdir: Path) -> None:
    """A copy that was not fsynced may not be on disk: a power cut could leave it empty with
    its times intact, so the next put copies again rather than trust it."""
    old = time.time() - 3600
    for path in (workdir / "data").rglob("*"):
        os.utime(path, (old, old))
    catalog = _catalog()
    catalog.put("data/*.csv", run_id="r")
    copy = workdir / ".catalog" / "r" / "data" / "a.csv"
    inode = os.stat(copy).st_ino
    catalog.put("data/*.csv", run_id="r")
    assert os.stat(copy).st_ino != inode


def test_failed_copy_keeps_what_was_there(workdir: Path) -> None:
    catalog = _catalog()
    catalog.put("data/a.csv", run_id="r")
    copy = workdir / ".catalog" / "r" / "data" / "a.csv"
    os.mkfifo(workdir / "data" / "pipe.csv")
    with pytest.raises(StorageError, match="FIFO") as raised:
        catalog.put("data/*.csv", run_id="r")
    assert raised.value.path == "data/pipe.csv"
    assert copy.read_text() == "x,y\n1,2\n"
    assert not (workdir / ".catalog" / "r" / "data" / "pipe.csv").exists()


def test_load_catalog_reads_the_catalog_section(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "catalog:\n  type: file-system\n  config:\n    catalog_location: /tmp/cat\n"
        "    hash_algorithm: sha256\n"
    )
    catalog = load_catalog(config)
    assert isinstance(catalog, FileSystemCatalog)
    assert (catalog.catalog_location, catalog.hash_algorithm) == ("/tmp/cat", "sha256")
    default = load_catalog(None)
    assert isinstance(default, FileSystemCatalog) and default.catalog_location == ".catalog"
    config.write_text("catalog:\n  type: file-system\n  config:\n    hash_algorithm: md5\n")
    with pytest.raises(ConfigurationError, match="hash_algorithm") as raised:
        load_catalog(config)
    assert raised.value.key == "hash_algorithm" and str(config) in str(raised.value)
    config.write_text("catalog:\n  type: s4\n")
    with pytest.raises(ConfigurationError, match="do-nothing, file-system"):
        load_catalog(config)


PROGRESS = """
import os, sys
from runlog_store import create_catalog
os.chdir(sys.argv[1])
create_catalog("file-system", fsync=False).put("many/*", run_id="r")
"""


def test_the_library_never_draws_even_on_a_terminal(tmp_path: Path) -> None:
    """A put inside a pipeline step writes nothing to the terminal: progress goes to the
    callback it is given, and the default callback reports nowhere."""
    many = tmp_path / "many"
    many.mkdir()
    for i in range(100):
        (many / f"f{i}").write_text(str(i))
    status, _, drawn = run_with_terminal_stderr([sys.executable, "-c", PROGRESS, str(tmp_path)])
    assert status == 0
    assert drawn == b""


def test_put_and_get_report_their_bytes_to_the_callback(tmp_path: Path) -> None:
    data = tmp_path / "work"
    (data / "many").mkdir(parents=True)
    for i in range(300):  # more than one batch of BATCH_FILES
        (data / "many" / f"f{i}").write_bytes(b"x" * i)
    catalog = create_catalog(
        "file-system",
        catalog_location=str(tmp_path / "catalog"),
        compute_data_folder=str(data),
        fsync=False,
    )
    put = RecordingCallback()
    catalog.put("many/*", run_id="r", callback=put)
    assert put.phases == [("put", sum(range(300)), "bytes")]
    assert put.done == [sum(range(300))] and not put.open
    got = RecordingCallback()
    catalog.get("many/f1*", run_id="r", callback=got)
    expected = sum(i for i in range(300) if str(i).startswith("1"))
    assert got.phases == [("get", expected, "bytes")] and got.done == [expected]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("data/*", ["data/a.csv", "data/b.csv"]),
        ("data/**/*", ["data/a.csv", "data/b.csv", "data/deep/c.txt"]),
        ("**/*.txt", ["data/deep/c.txt"]),
        ("deep/*", []),
        ("data/?.csv", ["data/a.csv", "data/b.csv"]),
        ("data/[!a].csv", ["data/b.csv"]),
    ],
)
def test_object_globs_match_like_path_glob(
    workdir: Path, pattern: str, expected: list[str]
) -> None:
    """The object and content catalogs match stored names the way the file-system catalog
    globs files."""
    names = ["data/a.csv", "data/b.csv", "data/deep/c.txt"]
    on_disk = sorted(
        p.relative_to(workdir).as_posix() for p in workdir.glob(pattern) if p.is_file()
    )
    assert on_disk == expected
    assert [n for n in names if glob_regex(pattern).fullmatch(n)] == expected


def test_a_run_catalog_moves_between_folders_without_leftovers(tmp_path: Path) -> None:
    """download_run, upload_run, run_files and delete_run of the file-system catalog (the
    contract checks what they return) leave no temp file of a copy and no folder of a delete
    behind, and read a run's execution logs written straight into its folder."""
    source = FileSystemCatalog(catalog_location=str(tmp_path / "a"), fsync=False)
    (tmp_path / "a" / "r1" / "data").mkdir(parents=True)
    (tmp_path / "a" / "r1" / "data" / "x.txt").write_text("hello")
    (tmp_path / "a" / "r1" / "step.execution.log").write_text("log")
    files = source.run_files("r1")
    assert files == {"data/x.txt": 5, "step.execution.log": 3}
    assert source.download_run("r1", tmp_path / "out") == 8
    target = FileSystemCatalog(catalog_location=str(tmp_path / "b"), fsync=False)
    assert target.upload_run("r1", tmp_path / "out") == 8
    assert target.run_files("r1") == files
    assert not list(tmp_path.rglob("*.tmp-*"))
    assert target.delete_run("r1") == 2 and target.run_files("r1") == {}
    assert not list((tmp_path / "b").glob(".deleting-*"))
    assert target.delete_run("r1") == 0
