"""What the writers do under the power cuts, and how what survived is checked against what they
had been told succeeded. Each check returns the acknowledged writes the disk lost (newly, this
cut) and one line per loss for the report."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from runlog_store import hash_file, hash_files
from runlog_store.hashing import format_data_hash

from .harness import Ack, Workload

# --- run log stores -------------------------------------------------------------------------

StoreFactory = Callable[[], Any]
STORE_KINDS = "BSPCR"


def store_workload(
    make_store: StoreFactory, run_id: str, start: int, json_parameter: Any
) -> Workload:
    """Branches, steps, root parameters, branch statuses and run statuses, one call each,
    acknowledged as ``<kind> <i>`` when the call returned (the crash test's writer)."""

    def work(ack: Ack) -> None:
        store = make_store()
        i = start
        while True:
            branch = store.create_branch_log(f"map.{i}")
            store.add_branch_log(branch, run_id)
            ack(f"B {i}")
            step = store.create_step_log("s", f"map.{i}.s")
            step.status = "SUCCESS"
            store.add_step_log(step, run_id)
            ack(f"S {i}")
            store.set_parameters(run_id, {f"p{i}": json_parameter(kind="json", value=i)})
            ack(f"P {i}")
            branch.status = "SUCCESS"
            store.add_branch_log(branch, run_id)
            ack(f"C {i}")
            store.update_run_log_status(run_id, f"AT-{i}")
            ack(f"R {i}")
            i += 1

    return work


@dataclass
class StoreRun:
    """One run under test: what was acknowledged in it, and what was already counted lost."""

    run_id: str
    acked: dict[str, set[int]] = field(default_factory=lambda: {k: set() for k in STORE_KINDS})
    counted: set[tuple[str, int]] = field(default_factory=set)
    next_index: int = 0

    def take(self, acks: list[str]) -> int:
        for line in acks:
            kind, i = line.split()
            self.acked[kind].add(int(i))
            self.next_index = max(self.next_index, int(i) + 2)
        return len(acks)

    @property
    def total(self) -> int:
        return 2 + sum(len(v) for v in self.acked.values())  # the run and its map step too

    def lost(self, document: dict[str, Any]) -> tuple[int, list[str]]:
        """Acknowledged writes missing from the run as read back (each counted once)."""
        map_step = document.get("steps", {}).get("map")
        if map_step is None:
            return self.total, [f"run {self.run_id}: its map step, written first, is gone"]
        branches = map_step.get("branches", {})
        missing: list[tuple[str, int]] = []
        for i in sorted(self.acked["B"]):
            if f"map.{i}" not in branches:
                missing.append(("B", i))
        for i in sorted(self.acked["S"]):
            steps = branches.get(f"map.{i}", {}).get("steps", {})
            if steps.get(f"map.{i}.s", {}).get("status") != "SUCCESS":
                missing.append(("S", i))
        parameters = document.get("parameters", {})
        missing += [("P", i) for i in sorted(self.acked["P"]) if f"p{i}" not in parameters]
        for i in sorted(self.acked["C"]):
            if branches.get(f"map.{i}", {}).get("status") != "SUCCESS":
                missing.append(("C", i))
        status = str(document.get("status", ""))
        at = int(status[3:]) if status.startswith("AT-") else -1
        missing += [("R", i) for i in sorted(self.acked["R"]) if i > at]
        new = [m for m in missing if m not in self.counted]
        self.counted.update(new)
        shown = [f"run {self.run_id}: acknowledged {kind} {i} is gone" for kind, i in new[:3]]
        return len(new), shown


# --- the file-system catalog ----------------------------------------------------------------

PARTS = 6


def catalog_workload(
    make_catalog: Callable[[], Any],
    compute: Path,
    run_id: str,
    start: int,
    *,
    cacheable: bool,
) -> Workload:
    """Each round writes new bytes to one of a few source files and puts it; the catalog's copy
    is replaced. ``I <i> <name> <hash>`` is said before a put (what may land), ``A <i> <name>
    <hash>`` after it returned. With ``cacheable`` the sources get an old mtime, so the hash
    cache records them and their copies, and each round puts every part (unchanged ones are
    answered from the cache, without a read or a copy)."""

    def work(ack: Ack) -> None:
        catalog = make_catalog()
        rng = random.Random(f"{run_id}-{start}")
        i = start
        while True:
            name = f"sub{i % 2}/part-{i % PARTS}.bin"
            source = compute / name
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_bytes(rng.randbytes(rng.randint(1, 24_000)))
            if cacheable:
                old = time.time_ns() - 60 * 10**9
                os.utime(source, ns=(old, old))
            pattern = "sub*/part-*.bin" if cacheable else name
            # Every file the put may copy, as the source holds it now: after a cut a source
            # can hold older bytes than its last acknowledged copy, and copying those is right.
            for path in sorted(compute.glob(pattern)):
                relative = path.relative_to(compute)
                ack(f"I {i} {relative} {format_data_hash('blake3', hash_file(path))}")
            for entry in catalog.put(pattern, run_id=run_id):
                ack(f"A {i} {entry.name} {entry.data_hash}")
            i += 1

    return work


@dataclass
class CatalogRun:
    run_id: str
    last_acked: dict[str, tuple[int, str]] = field(default_factory=dict)
    intents: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    counted: set[tuple[str, int]] = field(default_factory=set)
    next_index: int = 0

    def take(self, acks: list[str]) -> int:
        count = 0
        for line in acks:
            kind, i, name, data_hash = line.split()
            self.next_index = max(self.next_index, int(i) + 2)
            if kind == "I":
                self.intents.setdefault(name, []).append((int(i), data_hash))
            else:
                count += 1
                self.last_acked[name] = (int(i), data_hash)
        return count

    @property
    def total(self) -> int:
        return len(self.last_acked)

    def lost(self, run_folder: Path) -> tuple[int, list[str]]:
        """A put is lost when its copy is gone or holds other bytes than those it returned (or
        than a later put that was under way: an unacknowledged write may land)."""

        def held(name: str) -> str:
            try:
                return format_data_hash("blake3", hash_file(run_folder / name))
            except Exception as exc:
                return f"unreadable ({type(exc).__name__})"

        return self._losses(held, "the catalog holds", [])

    def _losses(
        self, held_of: Callable[[str], str], holder: str, shown: list[str]
    ) -> tuple[int, list[str]]:
        """The acknowledged puts whose file holds (``held_of``) neither what the put returned
        nor what a later put under way would have left, each counted once; up to three shown."""
        lost = 0
        for name, (i, data_hash) in sorted(self.last_acked.items()):
            held = held_of(name)
            may_hold = {data_hash} | {h for j, h in self.intents.get(name, []) if j > i}
            if held not in may_hold and (name, i) not in self.counted:
                self.counted.add((name, i))
                lost += 1
                if len(shown) < 3:
                    shown.append(
                        f"run {self.run_id}: put {i} of {name} returned {data_hash}, "
                        f"{holder} {held}"
                    )
        return lost, shown


# --- the hash cache -------------------------------------------------------------------------


@dataclass
class CacheCheck:
    files: int
    vouched: int
    lies: list[str]


def check_hash_cache(cache_file: Path, roots: list[Path], scratch: Path) -> CacheCheck:
    """Every file under ``roots`` that a cache entry vouches for (same device, inode, size,
    mtime and ctime) must hold the bytes of the entry's digest. Checked twice: by reading the
    entries (docs/format.md, "The hash cache"), and as a user sees it, by hashing through the
    cache against hashing without it."""
    entries: dict[tuple[str, int, int], tuple[int, int, int, str]] = {}
    try:
        text = cache_file.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        text = ""
    for line in text.split("\n"):
        body, _, check = line.rpartition(" ")
        if not body or blake3.blake3(body.encode()).hexdigest()[:8] != check:
            continue
        fields = body.split(" ")
        if len(fields) != 9 or fields[0] != "1":
            continue
        _, algorithm, dev, ino, size, mtime, ctime, _, digest = fields
        entries[(algorithm, int(dev), int(ino))] = (int(size), int(mtime), int(ctime), digest)
    files = sorted(
        p
        for root in roots
        if root.exists()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".runlog-hash-cache")
    )
    vouched = 0
    lies: list[str] = []
    for path in files:
        st = os.stat(path)
        entry = entries.get(("blake3", st.st_dev, st.st_ino))
        if entry is None or entry[:3] != (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            continue
        vouched += 1
        held = hash_file(path)
        if held != entry[3]:
            lies.append(
                f"{path.name}: the cache vouches {entry[3][:16]}..., it holds {held[:16]}..."
            )
    if files and cache_file.exists():
        copy = scratch / "cache-copy-for-check"  # outside the mount: the check writes to it
        copy.write_bytes(cache_file.read_bytes())
        try:
            through_cache = hash_files(files, cache=copy, return_exceptions=True)
        finally:
            copy.unlink()
        plain = hash_files(files, return_exceptions=True)
        for path, cached, read in zip(files, through_cache, plain, strict=True):
            if isinstance(cached, str) and isinstance(read, str) and cached != read:
                lies.append(
                    f"{path.name}: hash_files through the cache says {cached[:16]}..., "
                    f"it holds {read[:16]}..."
                )
    return CacheCheck(files=len(files), vouched=vouched, lies=sorted(set(lies)))


def document_of(store: Any, run_id: str) -> dict[str, Any]:
    """The full run log as JSON data, from our stores or runnable's."""
    if hasattr(store, "get_run_log_json"):
        result: dict[str, Any] = json.loads(store.get_run_log_json(run_id))
        return result
    return dict(store.get_run_log_by_id(run_id, full=True).model_dump(mode="json"))


# --- the content catalog (content-fs) -------------------------------------------------------

CONTENT_POOL = 5  # contents every round may reuse, so puts find contents already stored


def content_catalog_workload(
    make_catalog: Callable[[], Any], compute: Path, run_id: str, start: int
) -> Workload:
    """Each round writes one file with new bytes and one with a content from a small pool
    (stored already, most rounds) and puts both; ``I``/``A`` lines as in catalog_workload, the
    hashes BLAKE3 (the object names)."""

    def work(ack: Ack) -> None:
        catalog = make_catalog()
        rng = random.Random(f"{run_id}-{start}")
        i = start
        while True:
            new = compute / f"new-{i % PARTS}.bin"
            new.write_bytes(rng.randbytes(rng.randint(1, 24_000)))
            pooled = compute / f"pool-{i % 3}.bin"
            pooled.write_bytes(bytes([rng.randrange(CONTENT_POOL)]) * 5000)
            for path in (new, pooled):
                ack(f"I {i} {path.name} {format_data_hash('blake3', hash_file(path))}")
            for entry in catalog.put(f"*-{i % PARTS}.bin", run_id=run_id):
                ack(f"A {i} {entry.name} {entry.data_hash}")
            for entry in catalog.put(f"pool-{i % 3}.bin", run_id=run_id):
                ack(f"A {i} {entry.name} {entry.data_hash}")
            i += 1

    return work


def content_catalog_damage(catalog: Any) -> list[str]:
    """Every manifest entry (of any run) whose content is not stored or does not hash to its
    name: none may exist after a cut."""
    problems = []
    for run_id in catalog._manifest_run_ids():
        try:
            manifest = catalog._read_manifest(run_id) or {}
        except Exception as exc:
            problems.append(f"run {run_id}: its manifest does not read: {exc}")
            continue
        for path, entry in manifest.items():
            stored = catalog.object_path(entry.blake3)
            try:
                held = hash_file(stored)
            except Exception:
                problems.append(f"run {run_id}: {path} names {entry.blake3[:12]}, not stored")
                continue
            if held != entry.blake3:
                problems.append(f"run {run_id}: {path}: content {entry.blake3[:12]} holds {held}")
    return problems


@dataclass
class ContentCatalogRun(CatalogRun):
    """A content catalog's run: what its manifest names is what a put left."""

    def lost_in(self, catalog: Any) -> tuple[int, list[str]]:
        try:
            manifest = catalog._read_manifest(self.run_id) or {}
        except Exception as exc:
            manifest = {}
            damaged = f"run {self.run_id}: its manifest does not read: {exc}"
        else:
            damaged = ""

        def held(name: str) -> str:
            entry = manifest.get(name)
            return f"blake3:{entry.blake3}" if entry is not None else "nothing"

        return self._losses(held, "the manifest names", [damaged] if damaged else [])
