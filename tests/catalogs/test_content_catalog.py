"""The content catalogs (content-fs, content-minio): contents stored once across runs, gets by
reflink (on a real XFS image), hard link and copy, read-only hard links (as an unprivileged
user too), the gc of contents against a concurrent put process, runlog verify, runlog copy
both ways and runlog gc --with-catalog from the command line.

The contract suite (tests/contract/test_contract.py) covers what every catalog owes; this covers
what only a content catalog does.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest
import yaml

import runlog_store
from runlog_store import BaseCatalog, create_catalog, create_store
from runlog_store.catalogs.content import ContentCatalog
from runlog_store.catalogs.content_fs import ContentFileSystemCatalog
from runlog_store.exceptions import CatalogError

from ..conftest import ROOT

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


@contextlib.contextmanager
def _searchable_by_others(*paths: str | Path) -> Iterator[None]:
    """``nobody`` must reach the interpreter and the package: a clone made under ``mktemp -d``
    (mode 0700) is not searchable by others, so the folders on the way get the search bit for
    the test, and their modes back after it."""
    changed: list[tuple[Path, int]] = []
    for path in paths:
        resolved = Path(path).resolve()
        for folder in [resolved, *resolved.parents]:
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(folder, stat.S_IMODE(mode) | stat.S_IXOTH)
                changed.append((folder, stat.S_IMODE(mode)))
    try:
        yield
    finally:
        for folder, mode in reversed(changed):
            os.chmod(folder, mode)


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
        with _searchable_by_others(runlog_store.__file__, sys.executable, sys.prefix):
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


def _put_rounds(catalog: BaseCatalog, acks: Any, rounds: int, tolerant: bool) -> None:
    """The put process: each round puts the same files (their contents are stored already,
    and orphaned by the sweeper's deletes) into a new run, and says which run returned. A
    ``tolerant`` one goes on after a put that failed (a content swept under its feet)."""
    for i in range(rounds):
        try:
            catalog.put("*", run_id=f"put-{i}")
        except Exception:
            if not tolerant:
                raise
            continue
        acks.put(i)


class SlowContentCatalog(ContentFileSystemCatalog):
    """content-fs whose puts pause between finding their contents stored and writing their
    manifest, widening the window a sweep could strike in (a slow disk, a descheduled put)."""

    def _ensure_contents(self, *args: Any) -> None:
        super()._ensure_contents(*args)
        time.sleep(0.003)


class UnlockedContentCatalog(SlowContentCatalog):
    """The same without the store's lock: what a sweep does to a put without it."""

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
    process = context.Process(target=_put_rounds, args=(putter, acks, rounds, stop_at_first))
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
    slow = SlowContentCatalog(**make_fs(tmp_path).model_dump())
    puts, dangling = race_puts_against_sweeps(catalog, slow, rounds=150)
    assert puts == 150
    assert not dangling, f"manifests naming swept contents: {dangling[:5]}"


def test_without_the_lock_the_same_race_leaves_dangling_manifests(tmp_path: Path) -> None:
    """The race above with the put's lock taken away: the test above can fail."""
    catalog = make_fs(tmp_path)
    unlocked = UnlockedContentCatalog(**make_fs(tmp_path).model_dump())
    puts, dangling = race_puts_against_sweeps(catalog, unlocked, rounds=400, stop_at_first=True)
    assert dangling, f"no put of {puts} was caught between its check and its manifest"


# --- both types: the command line ------------------------------------------------------------


@pytest.fixture(params=["content-fs", "content-minio"])
def content_config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A content catalog's configuration (a folder, or a fresh bucket of the real server)."""
    if request.param == "content-fs":
        return {"type": "content-fs", "catalog_location": str(tmp_path / "content"), "fsync": False}
    return {"type": "content-minio", **request.getfixturevalue("minio_config")}


def write_config(path: Path, logs: Path, catalog: dict[str, Any]) -> Path:
    settings = {k: v for k, v in catalog.items() if k != "type"}
    document = {
        "run-log-store": {
            "type": "chunked-fs",
            "config": {"log_folder": str(logs), "fsync": False},
        },
        "catalog": {"type": catalog["type"], "config": settings},
    }
    path.write_text(yaml.safe_dump(document))
    return path


def record_run(logs: Path, run_id: str, entries: list[Any], status: str = "SUCCESS") -> None:
    """A run whose one step records catalog entries, as runnable's executor writes it."""
    store = create_store("chunked-fs", log_folder=str(logs), fsync=False)
    store.create_run_log(run_id)
    step = store.create_step_log("write", "write")
    step.data_catalog.extend(entries)
    step.status = status
    store.add_step_log(step, run_id)
    store.update_run_log_status(run_id, status)


SAMPLE = {"data/a.csv": b"x,y\n1,2\n", "data/deep/b.bin": os.urandom(30_000), "top.txt": b"top"}


def test_runlog_verify_checks_content_catalogs(content_config: dict[str, Any], tmp_path: Path):
    compute = tmp_path / "compute"
    write_files(compute, SAMPLE)
    settings = {**content_config, "compute_data_folder": str(compute)}
    config = write_config(tmp_path / "config.yaml", tmp_path / "logs", settings)
    catalog = create_catalog(settings.pop("type"), **settings)
    assert isinstance(catalog, ContentCatalog)
    record_run(tmp_path / "logs", "run-v", catalog.put("**/*", run_id="run-v"))
    done = runlog("verify", "run-v", "-c", config, cwd=tmp_path)
    assert done.stdout.count(" ok ") == 3, done.stdout
    # Damage the stored content of data/a.csv behind the catalog's back.
    digest = catalog.run_manifest("run-v")["data/a.csv"].blake3
    if isinstance(catalog, ContentFileSystemCatalog):
        stored = catalog.object_path(digest)
        stored.chmod(0o644)
        stored.write_bytes(b"x,y\n1,3\n")
    else:
        catalog.storage().put(catalog.object_key(digest), b"x,y\n1,3\n")  # type: ignore[attr-defined]
    done = runlog("verify", "run-v", "-c", config, cwd=tmp_path, code=1)
    assert "mismatch" in done.stdout and "a.csv" in done.stdout, done.stdout
    assert "1 of 3 files failed verification" in done.stdout, done.stdout


def test_runlog_copy_with_catalog_both_ways(content_config: dict[str, Any], tmp_path: Path):
    """file-system catalog -> content catalog -> file-system catalog, each through the command
    line, each checked by the copy itself (names, sizes, re-hashed data hashes)."""
    compute = tmp_path / "compute"
    write_files(compute, SAMPLE)
    per_run = {
        "type": "file-system",
        "catalog_location": str(tmp_path / "per-run"),
        "compute_data_folder": str(compute),
        "fsync": False,
    }
    source = write_config(tmp_path / "source.yaml", tmp_path / "logs-a", per_run)
    settings = {**content_config, "compute_data_folder": str(compute)}
    middle = write_config(tmp_path / "content.yaml", tmp_path / "logs-b", settings)
    back = {**per_run, "catalog_location": str(tmp_path / "back")}
    target = write_config(tmp_path / "back.yaml", tmp_path / "logs-c", back)
    first = create_catalog(per_run.pop("type"), **per_run)
    record_run(tmp_path / "logs-a", "run-c", first.put("**/*", run_id="run-c"))

    done = runlog("copy", "run-c", "-c", source, "--to", middle, "--with-catalog", cwd=tmp_path)
    assert "Copied 3 catalog files" in done.stdout and "3 of 3 re-hashed" in done.stdout
    content = create_catalog(settings.pop("type"), **settings)
    assert content.run_files("run-c") == first.run_files("run-c")

    done = runlog("copy", "run-c", "-c", middle, "--to", target, "--with-catalog", cwd=tmp_path)
    assert "Copied 3 catalog files" in done.stdout and "3 of 3 re-hashed" in done.stdout
    assert {
        p.relative_to(tmp_path / "back/run-c").as_posix(): p.read_bytes()
        for p in (tmp_path / "back/run-c").rglob("*")
        if p.is_file()
    } == SAMPLE


def test_runlog_gc_with_catalog_removes_unreferenced_contents(
    content_config: dict[str, Any], tmp_path: Path
) -> None:
    compute = tmp_path / "compute"
    write_files(compute, {"shared.txt": b"in both runs", "only-old.txt": b"only the failed run"})
    settings = {**content_config, "compute_data_folder": str(compute)}
    config = write_config(tmp_path / "config.yaml", tmp_path / "logs", settings)
    catalog = create_catalog(settings.pop("type"), **settings)
    assert isinstance(catalog, ContentCatalog)
    record_run(tmp_path / "logs", "failed", catalog.put("*.txt", run_id="failed"), "FAIL")
    record_run(tmp_path / "logs", "kept", catalog.put("shared.txt", run_id="kept"))
    time.sleep(1.2)
    args = ("gc", "--older-than", "1s", "--status", "FAIL", "-c", config, "--with-catalog")
    dry = runlog(*args, "--dry-run", cwd=tmp_path)
    assert "would remove 1 of 2" in dry.stderr, dry.stderr
    assert len(catalog._stored_contents()) == 2
    done = runlog(*args, cwd=tmp_path)
    assert "removed 1 of 2 (19 bytes)" in done.stderr, done.stderr
    assert set(catalog._stored_contents()) == {b3(b"in both runs")}
    assert catalog.run_files("failed") == {}
    shutil.rmtree(compute)
    assert [e.name for e in catalog.get("*", run_id="kept")] == ["shared.txt"]
    runlog("verify", "kept", "-c", config, cwd=tmp_path)


# --- content-minio ------------------------------------------------------------------------------


def make_minio(minio_config: dict[str, str], compute: Path, **config: Any) -> ContentCatalog:
    catalog = create_catalog(
        "content-minio", **minio_config, compute_data_folder=str(compute), **config
    )
    assert isinstance(catalog, ContentCatalog)
    return catalog


def listing(catalog: ContentCatalog, under: str) -> dict[str, tuple[str, float | None]]:
    bucket = catalog.storage()  # type: ignore[attr-defined]
    return {o.key: (o.etag, o.modified) for o in bucket.list_objects(bucket.key(under) + "/")}


def test_minio_uploads_only_the_missing_contents(
    minio_config: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runlog_store.catalogs import content_minio

    # Contents over 50 KB take the large path (streamed to incoming/, checked, copied).
    monkeypatch.setattr(content_minio, "SMALL_CONTENT_BYTES", 50_000)
    compute = tmp_path / "compute"
    files = {f"f{i:02}": os.urandom(1000 if i % 2 else 60_000) for i in range(20)}
    write_files(compute, files)
    catalog = make_minio(minio_config, compute)
    catalog.put("*", run_id="a")
    first = listing(catalog, "objects")
    assert len(first) == 20
    write_files(compute, {"f00": b"changed"})
    catalog.put("*", run_id="b")
    second = listing(catalog, "objects")
    assert len(second) == 21
    assert {k: v for k, v in second.items() if k in first} == first, "nothing sent again"
    assert listing(catalog, "incoming") == {} and listing(catalog, "locks") == {}
    shutil.rmtree(compute)
    catalog.get("*", run_id="a")
    assert {p.name: p.read_bytes() for p in compute.iterdir()} == files
    # A damaged content is refused by a get, naming the object.
    bucket = catalog.storage()  # type: ignore[attr-defined]
    bucket.put(catalog.object_key(b3(files["f01"])), b"garbage")  # type: ignore[attr-defined]
    with pytest.raises(CatalogError, match="content store is damaged"):
        catalog.get("f01", run_id="a")


def test_minio_leases_keep_a_sweep_and_puts_apart(
    minio_config: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runlog_store.catalogs import content, content_minio

    monkeypatch.setattr(content_minio, "LOCK_WAIT_SECONDS", 1.0)
    monkeypatch.setattr(content, "LOCK_WAIT_SECONDS", 1.0)
    catalog = make_minio(minio_config, tmp_path)
    bucket = catalog.storage()  # type: ignore[attr-defined]
    with content_minio.Lease(bucket, "put", "r"), pytest.raises(Exception, match="puts held"):
        catalog.sweep_contents()
    with content_minio.Lease(bucket, "gc", ""), pytest.raises(Exception, match="a gc of"):
        write_files(tmp_path, {"f": b"f"})
        catalog.put("f", run_id="r")
    assert catalog.sweep_contents().contents == 0
    # A lease its process left behind (killed) holds nothing up once it is stale.
    bucket.put(bucket.key("locks", "put-dead"), b"")
    monkeypatch.setattr(content_minio, "LEASE_SECONDS", 0.5)
    time.sleep(1.5)
    assert catalog.sweep_contents().contents == 0


def test_minio_gc_is_safe_against_a_put_running_at_the_same_moment(
    minio_config: dict[str, str], tmp_path: Path
) -> None:
    catalog = make_minio(minio_config, tmp_path / "compute")
    putter = make_minio(minio_config, tmp_path / "compute")
    puts, dangling = race_puts_against_sweeps(catalog, putter, rounds=25)
    assert puts == 25
    assert not dangling, f"manifests naming swept contents: {dangling[:5]}"


def test_minio_refuses_link_modes_a_download_cannot_honour(minio_config: dict[str, str]) -> None:
    from runlog_store.exceptions import ConfigurationError

    for link in ("reflink", "hardlink"):
        with pytest.raises(ConfigurationError, match="key 'link'"):
            create_catalog("content-minio", link=link, **minio_config)
