"""The content catalogs (content-fs, content-minio): contents stored once across runs, gets by
reflink (on a real XFS image), hard link and copy, read-only hard links (as an unprivileged
user too), the gc of contents against a concurrent put process, runlog verify, runlog copy
both ways and runlog gc --with-catalog from the command line.

The contract suite (tests/test_contract.py) covers what every catalog owes; this covers what
only a content catalog does.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest

from runlog_store import BaseCatalog, create_catalog
from runlog_store.catalogs.content import ContentCatalog
from runlog_store.catalogs.content_fs import ContentFileSystemCatalog
from runlog_store.exceptions import CatalogError

from .conftest import ROOT

RUNLOG = str(Path(sys.executable).with_name("runlog"))
XFS_SCRIPT = ROOT / "scripts" / "xfs.sh"
NOBODY = 65534


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def write_files(folder: Path, files: dict[str, bytes], *, old: bool = True) -> None:
    """Write files; ``old`` backdates them so the hash cache may record them (it never trusts a
    file modified within the last second)."""
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if old:
            past = time.time_ns() - 60 * 10**9
            os.utime(path, ns=(past, past))


def objects_of(catalog_root: Path) -> dict[str, bytes]:
    """Every stored content of a content-fs catalog: digest -> bytes."""
    found = {}
    for path in sorted((catalog_root / "objects").glob("*/*")):
        if not path.name.startswith("."):
            found[path.parent.name + path.name] = path.read_bytes()
    return found


def make_fs(tmp_path: Path, **config: Any) -> ContentFileSystemCatalog:
    config.setdefault("catalog_location", str(tmp_path / "catalog"))
    config.setdefault("compute_data_folder", str(tmp_path / "compute"))
    config.setdefault("fsync", False)
    catalog = create_catalog("content-fs", **config)
    assert isinstance(catalog, ContentFileSystemCatalog)
    return catalog


def runlog(*args: object, cwd: Path, code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [RUNLOG, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == code, f"runlog {args}: exit {done.returncode}\n{done.stderr}"
    return done


# --- stored once --------------------------------------------------------------------------------


def test_contents_are_stored_once_across_runs(tmp_path: Path) -> None:
    files = {f"data/part-{i}.bin": os.urandom(4096) for i in range(20)}
    write_files(tmp_path / "compute", files)
    catalog = make_fs(tmp_path)
    for run in range(5):
        changed = f"data/part-{run}.bin"
        write_files(tmp_path / "compute", {changed: f"changed in run {run}".encode()})
        entries = catalog.put("data/*", run_id=f"run-{run}")
        assert len(entries) == 20
    stored = objects_of(tmp_path / "catalog")
    # 19 originals (part-0 changed before the first put) and the 5 changed contents.
    assert len(stored) == 24
    assert all(b3(content) == digest for digest, content in stored.items())
    for run in range(5):
        assert set(catalog.run_manifest(f"run-{run}")) == set(files)
    # A run owns its manifest only: the files of run 4 are the files as run 4 saw them.
    shutil.rmtree(tmp_path / "compute")
    catalog.get("data/*", run_id="run-4")
    assert (tmp_path / "compute/data/part-4.bin").read_bytes() == b"changed in run 4"
    assert (tmp_path / "compute/data/part-5.bin").read_bytes() == files["data/part-5.bin"]


def test_a_repeat_put_reads_and_writes_no_content(tmp_path: Path) -> None:
    write_files(tmp_path / "compute", {f"f{i}": os.urandom(1000) for i in range(30)})
    catalog = make_fs(tmp_path)
    first = {e.name: e.data_hash for e in catalog.put("*", run_id="one")}
    before = {
        p: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (tmp_path / "catalog/objects").glob("*/*")
    }
    cache = (tmp_path / "catalog/.runlog-hash-cache").read_text()
    assert len(cache.splitlines()) == 30, "each old source's identity was recorded"
    second = {e.name: e.data_hash for e in catalog.put("*", run_id="two")}
    assert second == first
    after = {
        p: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (tmp_path / "catalog/objects").glob("*/*")
    }
    assert after == before, "a repeat put stored nothing"
    assert (tmp_path / "catalog/.runlog-hash-cache").read_text() == cache, "and read nothing"


def test_sha256_is_recorded_and_the_object_named_by_blake3(tmp_path: Path) -> None:
    content = os.urandom(5 << 20)  # big enough for the two-thread path
    write_files(tmp_path / "compute", {"big.bin": content, "small.txt": b"small"})
    catalog = make_fs(tmp_path, hash_algorithm="sha256")
    entries = {e.name: e.data_hash for e in catalog.put("*", run_id="r")}
    assert entries == {
        "big.bin": hashlib.sha256(content).hexdigest(),
        "small.txt": hashlib.sha256(b"small").hexdigest(),
    }
    assert set(objects_of(tmp_path / "catalog")) == {b3(content), b3(b"small")}
    manifest = catalog.run_manifest("r")
    assert manifest["big.bin"].sha256 == entries["big.bin"]
    assert manifest["big.bin"].blake3 == b3(content)
    # The cache answers both digests the second time (files are old): same entries.
    assert {e.name: e.data_hash for e in catalog.put("*", run_id="r2")} == entries
    shutil.rmtree(tmp_path / "compute")
    got = {e.name: e.data_hash for e in catalog.get("*", run_id="r")}
    assert got == entries, "a get answers from the manifest"
    # A catalog reconfigured to BLAKE3 finds no BLAKE3 entry for SHA-256 (it is the name).
    relinked = make_fs(tmp_path, hash_algorithm="blake3")
    got = {e.name: e.data_hash for e in relinked.get("*", run_id="r")}
    assert got["big.bin"] == f"blake3:{b3(content)}"


def test_a_sync_between_runs_copies_no_content(tmp_path: Path) -> None:
    write_files(tmp_path / "compute", {"a": b"a", "b": b"b"})
    catalog = make_fs(tmp_path)
    catalog.put("*", run_id="first")
    stored = objects_of(tmp_path / "catalog")
    catalog.sync_between_runs("first", "retry")
    assert objects_of(tmp_path / "catalog") == stored
    assert catalog.run_files("retry") == catalog.run_files("first")


def test_a_damaged_manifest_is_named_and_stops_a_sweep(tmp_path: Path) -> None:
    write_files(tmp_path / "compute", {"a": b"a"})
    catalog = make_fs(tmp_path)
    catalog.put("*", run_id="r")
    catalog.put("*", run_id="other")
    manifest = tmp_path / "catalog/manifests/r.json"
    manifest.write_text(manifest.read_text().replace('"files"', '"filez"'))
    with pytest.raises(CatalogError, match="manifest of run 'r' is damaged") as raised:
        catalog.get("*", run_id="r")
    assert raised.value.path == str(manifest)
    with pytest.raises(CatalogError):
        catalog.sweep_contents()
    assert len(objects_of(tmp_path / "catalog")) == 1, "nothing removed on a guess"
    assert catalog.delete_run("r") == 1
    assert catalog.sweep_contents().removed == 0


# --- materializing --------------------------------------------------------------------------


def test_hard_links_share_the_object_and_are_read_only(tmp_path: Path) -> None:
    write_files(tmp_path / "compute", {"data/model.bin": b"weights" * 1000})
    catalog = make_fs(tmp_path, link="hardlink")
    (entry,) = catalog.put("data/*", run_id="r")
    shutil.rmtree(tmp_path / "compute")
    (got,) = catalog.get("data/*", run_id="r")
    assert got.data_hash == entry.data_hash
    linked = tmp_path / "compute/data/model.bin"
    stored = catalog.object_path(b3(b"weights" * 1000))
    assert linked.stat().st_ino == stored.stat().st_ino
    assert linked.stat().st_mode & 0o777 == 0o444
    # A get over it replaces the name (rename), never the shared inode's bytes.
    catalog.get("data/*", run_id="r")
    assert stored.read_bytes() == b"weights" * 1000


def test_root_can_write_through_a_hard_link_so_auto_never_makes_one_for_root(
    tmp_path: Path,
) -> None:
    """What the read-only mode cannot stop: root's writes ignore it. So ``auto`` copies for
    root (ext4 has no reflinks), and ``hardlink`` asked for explicitly is root's own risk."""
    if os.geteuid() != 0:
        pytest.skip("shows what root can do; the suite runs as root in CI")
    content = b"shared content"
    write_files(tmp_path / "compute", {"f": content})
    auto = make_fs(tmp_path)
    auto.put("f", run_id="r")
    (tmp_path / "compute/f").unlink()
    auto.get("f", run_id="r")
    stored = auto.object_path(b3(content))
    assert (tmp_path / "compute/f").stat().st_ino != stored.stat().st_ino, "auto copied"
    (tmp_path / "compute/f").write_bytes(b"changed by the step")
    assert stored.read_bytes() == content, "a copy is the step's own"
    # Root asking for hard links: a write through one goes into the store, for every run.
    make_fs(tmp_path, link="hardlink").get("f", run_id="r")
    with open(tmp_path / "compute/f", "r+b") as through:
        through.write(b"SHARED")
    assert stored.read_bytes() != content
    assert auto.sweep_contents().removed == 0
    # ...which verify then shows: the checked copy refuses the damaged content.
    (tmp_path / "compute/f").unlink()
    with pytest.raises(CatalogError, match="content store is damaged"):
        make_fs(tmp_path, link="copy").get("f", run_id="r")


UNPRIVILEGED_STEP = """
import os, sys
from runlog_store import create_catalog

root = sys.argv[1]
catalog = create_catalog(
    "content-fs", catalog_location=f"{root}/catalog", compute_data_folder=f"{root}/compute",
    fsync=False,
)
os.makedirs(f"{root}/compute", exist_ok=True)
with open(f"{root}/compute/model.bin", "wb") as out:
    out.write(b"the stored weights")
catalog.put("model.bin", run_id="r")
os.unlink(f"{root}/compute/model.bin")
catalog.get("model.bin", run_id="r")
got = os.stat(f"{root}/compute/model.bin")
stored = os.stat(catalog.object_path(catalog.run_manifest("r")["model.bin"].blake3))
same = got.st_ino == stored.st_ino
print("uid", os.geteuid(), "same inode", same, "mode", oct(got.st_mode & 0o777))
for how in ("r+b", "ab", "wb"):
    try:
        with open(f"{root}/compute/model.bin", how) as through:
            through.write(b"overwritten")
        print("WROTE", how)
    except PermissionError:
        print("refused", how)
with open(catalog.object_path(catalog.run_manifest("r")["model.bin"].blake3), "rb") as held:
    print("store holds", held.read().decode())
"""


def test_an_unprivileged_step_cannot_write_through_a_hard_link_into_the_store() -> None:
    """As the user ``nobody`` (setpriv), a put then a get with ``link: auto`` on ext4 makes a
    hard link (no reflinks there), and every way of opening it for writing is refused."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user (the suite runs as root in CI)")
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is missing")
    folder = Path(tempfile.mkdtemp(prefix="runlog-nobody-", dir="/tmp"))
    try:
        os.chown(folder, NOBODY, NOBODY)
        script = folder / "step.py"
        script.write_text(UNPRIVILEGED_STEP)
        done = subprocess.run(
            [
                "setpriv",
                f"--reuid={NOBODY}",
                f"--regid={NOBODY}",
                "--clear-groups",
                sys.executable,
                str(script),
                str(folder),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": str(folder)},
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == f"uid {NOBODY} same inode True mode 0o444", done.stdout
        assert lines[1:4] == ["refused r+b", "refused ab", "refused wb"], done.stdout
        assert lines[4] == "store holds the stored weights", done.stdout
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_explicit_reflink_on_ext4_is_a_clear_error(tmp_path: Path) -> None:
    write_files(tmp_path / "compute", {"f": b"x"})
    catalog = make_fs(tmp_path, link="reflink")
    catalog.put("f", run_id="r")
    with pytest.raises(Exception, match="reflink") as raised:
        catalog.get("f", run_id="r")
    assert "Operation not supported" in str(raised.value) or "not" in str(raised.value)
    assert not [p for p in (tmp_path / "compute").iterdir() if p.name.startswith(".")]


def _xfs_problem() -> str | None:
    if os.geteuid() != 0:
        return "making and mounting an XFS image needs root"
    done = subprocess.run(["bash", str(XFS_SCRIPT)], capture_output=True, text=True)
    if done.returncode != 0:
        return f"{XFS_SCRIPT.name} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
    return None


@pytest.fixture
def xfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh XFS filesystem (reflinks on) in a sparse image, loop-mounted for the test."""
    problem = _xfs_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the reflink tests are required in CI: {problem}")
        pytest.skip(f"no XFS for the reflink tests: {problem}")
    image = tmp_path / "xfs.img"
    with open(image, "wb") as sparse:
        sparse.truncate(320 << 20)  # mkfs.xfs's smallest
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    mount = tmp_path / "xfs"
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        done = subprocess.run(["umount", str(mount)], capture_output=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _used_bytes(folder: Path) -> int:
    os.sync()
    stat = os.statvfs(folder)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def test_reflinks_on_xfs_share_blocks_and_stay_private(xfs: Path) -> None:
    """On a real XFS image: the put clones the source into the store and the get clones the
    content into place (no blocks used either time), and the reflinked file is an ordinary
    writable file whose writes never reach the store."""
    content = os.urandom(64 << 20)
    write_files(xfs / "compute", {"data/big.bin": content})
    used = _used_bytes(xfs)
    for link in ("auto", "reflink"):
        catalog = make_fs(xfs, link=link, fsync=True)
        (entry,) = catalog.put("data/*", run_id=f"r-{link}")
        (xfs / "compute/data/big.bin").unlink()
        (got,) = catalog.get("data/*", run_id=f"r-{link}")
        assert got.data_hash == entry.data_hash
        placed = xfs / "compute/data/big.bin"
        stored = catalog.object_path(b3(content))
        assert placed.stat().st_ino != stored.stat().st_ino, "a reflink is its own file"
        assert placed.stat().st_mode & 0o200, "and writable"
        assert placed.read_bytes() == content
        assert _used_bytes(xfs) - used < 4 << 20, "the clones share the blocks"
    with open(xfs / "compute/data/big.bin", "r+b") as step:
        step.write(b"the step's own change")
    assert catalog.object_path(b3(content)).read_bytes() == content
    # filefrag marks extents shared by reflinks.
    frag = subprocess.run(
        ["filefrag", "-v", str(catalog.object_path(b3(content)))], capture_output=True, text=True
    )
    assert "shared" in frag.stdout, frag.stdout


def test_auto_links_what_it_can_and_copies_the_rest(tmp_path: Path) -> None:
    """Targets on another filesystem (tmpfs here, at /dev/shm) cannot be linked at all: auto
    copies them, hardlink says why it cannot."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm")
    write_files(tmp_path / "compute", {"f": b"cross-device"})
    catalog = make_fs(tmp_path)
    catalog.put("f", run_id="r")
    with tempfile.TemporaryDirectory(dir=shm) as elsewhere:
        other = make_fs(tmp_path, compute_data_folder=elsewhere)
        assert other.get("f", run_id="r")[0].name == "f"
        assert (Path(elsewhere) / "f").read_bytes() == b"cross-device"
        hard = make_fs(tmp_path, compute_data_folder=elsewhere, link="hardlink")
        with pytest.raises(Exception, match="hard-link"):
            hard.get("f", run_id="r")


# --- gc of contents -------------------------------------------------------------------------


def test_sweep_removes_only_what_no_manifest_references(tmp_path: Path) -> None:
    write_files(tmp_path / "compute", {"shared": b"shared", "one": b"one", "two": b"two"})
    catalog = make_fs(tmp_path)
    catalog.put("shared", run_id="a")
    catalog.put("one", run_id="a")
    catalog.put("shared", run_id="b")
    catalog.put("two", run_id="b")
    dry = catalog.sweep_contents(dry_run=True, ignoring={"a"})
    assert (dry.removed, dry.removed_bytes) == (1, 3)
    assert len(objects_of(tmp_path / "catalog")) == 3, "a dry run removes nothing"
    assert catalog.delete_run("a") == 2
    sweep = catalog.sweep_contents()
    assert (sweep.manifests, sweep.contents, sweep.removed) == (1, 3, 1)
    assert set(objects_of(tmp_path / "catalog")) == {b3(b"shared"), b3(b"two")}
    shutil.rmtree(tmp_path / "compute")
    assert sorted(e.name for e in catalog.get("*", run_id="b")) == ["shared", "two"]


def _put_rounds(catalog: BaseCatalog, acks: Any, rounds: int) -> None:
    """The put process: each round puts the same files (their contents are stored already,
    and orphaned by the sweeper's deletes) into a new run, and says which run returned."""
    for i in range(rounds):
        catalog.put("*", run_id=f"put-{i}")
        acks.put(i)


class UnlockedContentCatalog(ContentFileSystemCatalog):
    """content-fs without the store's lock: what a sweep does to a put without it."""

    @contextlib.contextmanager
    def _sharing(self, run_id: str) -> Iterator[Any]:
        yield lambda: None


def race_puts_against_sweeps(
    catalog: ContentCatalog, putter: BaseCatalog, rounds: int, *, stop_at_first: bool = False
) -> tuple[int, list[str]]:
    """A real put process (``putter``, forked) against sweeps in this one. Between sweeps every
    acknowledged run but the newest is deleted, orphaning the contents the next put reuses: a
    put that found them stored and then had them swept before its manifest was written would
    leave that manifest naming missing contents. Returns (acknowledged puts, such manifests)."""
    write_files(Path(catalog.compute_data_folder), {f"f{i}": os.urandom(2000) for i in range(40)})
    context = multiprocessing.get_context("fork")
    acks = context.Queue()
    process = context.Process(target=_put_rounds, args=(putter, acks, rounds))
    process.start()
    acknowledged: list[int] = []
    dangling: list[str] = []
    try:
        while process.is_alive() or not acks.empty():
            with contextlib.suppress(Exception):
                while True:
                    acknowledged.append(acks.get(timeout=0.001))
            for i in acknowledged[:-1]:
                catalog.delete_run(f"put-{i}")
            catalog.sweep_contents()
            stored = set(catalog._stored_contents())
            for run_id in catalog._manifest_run_ids():
                manifest = catalog._read_manifest(run_id) or {}
                if any(entry.blake3 not in stored for entry in manifest.values()):
                    dangling.append(run_id)
                    catalog.delete_run(run_id)
            if dangling and stop_at_first:
                break
    finally:
        if stop_at_first and process.is_alive():
            os.kill(process.pid or 0, signal.SIGKILL)
        process.join(timeout=300)
    assert process.exitcode in (0, -signal.SIGKILL), f"the put process failed: {process.exitcode}"
    return len(acknowledged), dangling


def test_gc_is_safe_against_a_put_running_at_the_same_moment(tmp_path: Path) -> None:
    catalog = make_fs(tmp_path)
    puts, dangling = race_puts_against_sweeps(catalog, make_fs(tmp_path), rounds=150)
    assert puts == 150
    assert not dangling, f"manifests naming swept contents: {dangling[:5]}"


def test_without_the_lock_the_same_race_leaves_dangling_manifests(tmp_path: Path) -> None:
    """The race above with the put's lock taken away: the test above can fail."""
    catalog = make_fs(tmp_path)
    unlocked = UnlockedContentCatalog(**make_fs(tmp_path).model_dump())
    puts, dangling = race_puts_against_sweeps(catalog, unlocked, rounds=400, stop_at_first=True)
    assert dangling, f"no put of {puts} was caught between its check and its manifest"
