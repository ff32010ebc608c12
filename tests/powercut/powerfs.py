"""A FUSE filesystem that forgets, at a power cut, what a disk would not have kept.

Every operation passes through to a backing folder, which is what the running system sees (the
page cache, in a real machine). Beside it the filesystem keeps what the disk holds: for each
file, its bytes and times as of its last ``fsync`` (``fdatasync``: its bytes only); for each
folder, its entries as of its last ``fsync``. A cut rewrites the backing folder to that, at once:

- a file's bytes written since its last sync are gone: it reverts to its content at that sync
  (a file never synced is empty);
- a create, link, rename, unlink, mkdir or rmdir in a folder not fsynced since is undone: the
  folder's entries are those of its last fsync (a folder never fsynced is empty, and one whose
  own name was never made durable is gone with everything in it);
- a rename is all or nothing: moved between two folders, it is kept or undone in both at once.

A cut may also let part of the unsynced state reach the disk first (``writeback``, the fraction
of dirty files and folders the kernel had written back): each dirty folder is then kept whole
or undone whole, and each dirty file kept whole, undone, or left with its new size and times
but the unsynced bytes read as zeros (the "NULL files" of XFS). docs/testing.md gives the model
and its sources.

Run as ``python powerfs.py BACKING STATE MOUNTPOINT``: it mounts in the foreground and serves
until unmounted. ``STATE`` (on the backing folder's filesystem) holds its scratch folders and
the control socket ``control.sock``, which takes one JSON request per line:

- ``{"op": "freeze"}``: the power goes off: every operation from now on fails with EIO;
- ``{"op": "cut", "writeback": 0.0, "seed": 1}``: the backing folder becomes what the disk
  kept, and the power comes back; the reply counts what was lost;
- ``{"op": "sync"}``: everything is on the disk now (``sync(2)``), used to set up a test;
- ``{"op": "stats"}``: counts of the sync calls received, and whether the power is off;
- ``{"op": "cut_at", "call": "rename", "skip": 0, "after": "fdatasync"}``: the power goes off
  as a given call arrives (that call and every later one fail with EIO), for cuts that must
  land at one point of a sequence; ``cut`` then brings the power back as after a freeze.

Inode numbers are the filesystem's own and survive cuts, as on a disk; so do the ctimes it
shows (the backing folder's move when the cut rewrites it), so an identity recorded before a cut
(the catalog's hash cache keys on device, inode, size, mtime and ctime) can match after it.
Symbolic links, extended attributes and fallocate's modes other than plain room-making are
not supported: no code under test uses them. Standard library and ``mfusepy`` only.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import socket
import stat
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mfusepy

ROOT_INO = 1
KEPT, LOST, SIZE_ONLY = "kept", "lost", "size-only"


@dataclass
class FileOnDisk:
    """What the disk holds of a file: its bytes and times at its last sync."""

    data: bytes
    mtime_ns: int
    ctime_ns: int


@dataclass
class FolderOnDisk:
    """What the disk holds of a folder: its entries (name to inode) at its last fsync."""

    entries: dict[str, int]


class PowerCutFs(mfusepy.Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, backing: str, state: str) -> None:
        self.backing = os.path.abspath(backing)
        self.state = os.path.abspath(state)
        self.grave = os.path.join(self.state, "grave")
        shutil.rmtree(self.grave, ignore_errors=True)
        os.makedirs(self.grave)
        self._mutex = threading.Lock()
        self.frozen = False
        # The backing inode of every name the mount shows, to this filesystem's own inode.
        self.ino_of: dict[int, int] = {os.lstat(self.backing).st_ino: ROOT_INO}
        self.next_ino = ROOT_INO + 1
        # Files and folders changed since their last sync, with what the disk still holds.
        # Everything else is on the disk as the backing folder shows it.
        self.dirty_files: dict[int, FileOnDisk] = {}
        self.dirty_folders: dict[int, FolderOnDisk] = {}
        # Renames between two folders not yet durable in both: (from, name, to, name, inode).
        self.pending_moves: list[tuple[int, str, int, str, int]] = []
        # ctime shown for an inode while its backing ctime is still the one recorded
        # (the cut's own rewriting moves backing ctimes; a disk's would not move).
        self.shown_ctime: dict[int, tuple[int, int]] = {}
        self.counts: Counter[str] = Counter()
        # A cut set to land at a given call (``cut_at``): the power goes off as it arrives.
        self.trap: dict[str, Any] | None = None
        self.seen: Counter[str] = Counter()

    # --- helpers --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _powered(self) -> Iterator[None]:
        with self._mutex:
            if self.frozen:
                raise OSError(errno.EIO, "the power is off")
            # A request read before the cut can reach this point after it, when its caller,
            # killed at the cut, is gone: it must not land on the disk as it is after the cut.
            caller = mfusepy.fuse_get_context()[2]
            if caller and not os.path.exists(f"/proc/{caller}"):
                self.counts["calls_of_the_dead"] += 1
                raise OSError(errno.EIO, "the caller died in the power cut")
            yield

    def _sprung(self, call: str) -> None:
        """Turn the power off if the cut set by ``cut_at`` lands at this call (the mutex is
        held): the call fails, and every one after it."""
        self.seen[call] += 1
        trap = self.trap
        if trap is None or trap["call"] != call or self.seen[trap.get("after", call)] == 0:
            return
        if trap["skip"] > 0:
            trap["skip"] -= 1
            return
        self.trap = None
        self.frozen = True
        raise OSError(errno.EIO, "the power is off")

    def _full(self, path: str) -> str:
        return self.backing + path

    def _ino(self, backing_ino: int) -> int:
        ino = self.ino_of.get(backing_ino)
        if ino is None:
            ino = self.next_ino
            self.next_ino += 1
            self.ino_of[backing_ino] = ino
        return ino

    def _ctime(self, ino: int, st: os.stat_result) -> int:
        shown = self.shown_ctime.get(ino)
        if shown is not None:
            if shown[0] == st.st_ctime_ns:
                return shown[1]
            del self.shown_ctime[ino]
        return st.st_ctime_ns

    def _parent(self, path: str) -> tuple[int, str]:
        full = self._full(os.path.dirname(path))
        return self._ino(os.lstat(full).st_ino), full

    def _listing(self, full: str) -> dict[str, int]:
        with os.scandir(full) as entries:
            return {entry.name: self._ino(entry.inode()) for entry in entries}

    def _folder_changing(self, ino: int, full: str) -> None:
        """Before a folder's entries change: what the disk holds of it, if not noted yet."""
        if ino not in self.dirty_folders:
            self.dirty_folders[ino] = FolderOnDisk(self._listing(full))

    def _file_changing(self, ino: int, st: os.stat_result, readable: str) -> None:
        """Before a file's bytes or times change: what the disk holds of it, if not noted yet."""
        if ino not in self.dirty_files:
            with open(readable, "rb") as f:
                data = f.read()
            self.dirty_files[ino] = FileOnDisk(data, st.st_mtime_ns, self._ctime(ino, st))

    # --- attributes and reading -------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        with self._powered():
            st = os.lstat(self._full(path)) if path is not None else os.fstat(fh)  # type: ignore[arg-type]
            ino = self._ino(st.st_ino)
            return {
                "st_mode": st.st_mode,
                "st_ino": ino,
                "st_nlink": st.st_nlink,
                "st_uid": st.st_uid,
                "st_gid": st.st_gid,
                "st_size": st.st_size,
                "st_blocks": st.st_blocks,
                "st_atime": st.st_atime_ns,
                "st_mtime": st.st_mtime_ns,
                "st_ctime": self._ctime(ino, st),
            }

    def access(self, path: str, amode: int) -> int:
        with self._powered():
            os.lstat(self._full(path))
            return 0

    def statfs(self, path: str) -> dict[str, int]:
        with self._powered():
            sv = os.statvfs(self.backing)
            keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files")
            return {key: getattr(sv, key) for key in (*keys, "f_ffree", "f_favail", "f_namemax")}

    def opendir(self, path: str) -> int:
        with self._powered():
            return os.open(self._full(path), os.O_RDONLY | os.O_DIRECTORY)

    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int], int]]:
        with self._powered():
            # With use_ino the entries carry inode numbers, and readdir(3) skips inode 0.
            full = self._full(path) if path is not None else f"/proc/self/fd/{fh}"
            st = os.lstat(full)
            found = [(".", {"st_ino": self._ino(st.st_ino), "st_mode": st.st_mode}, 0)]
            found.append(("..", {"st_ino": ROOT_INO, "st_mode": stat.S_IFDIR}, 0))
            with os.scandir(full) as entries:
                for entry in entries:
                    mode = stat.S_IFDIR if entry.is_dir(follow_symlinks=False) else stat.S_IFREG
                    found.append(
                        (entry.name, {"st_ino": self._ino(entry.inode()), "st_mode": mode}, 0)
                    )
            return found

    def releasedir(self, path: str | None, fh: int) -> int:
        os.close(fh)  # even with the power off: the kernel closes what a dead process held
        return 0

    def open(self, path: str, flags: int) -> int:
        with self._powered():
            full = self._full(path)
            if flags & os.O_TRUNC:
                st = os.lstat(full)
                self._file_changing(self._ino(st.st_ino), st, full)
            return os.open(full, flags & ~(os.O_CREAT | os.O_EXCL))

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        with self._powered():
            return os.pread(fh, size, offset)

    def flush(self, path: str | None, fh: int) -> int:
        return 0

    def release(self, path: str | None, fh: int) -> int:
        os.close(fh)
        return 0

    # --- changing files ---------------------------------------------------------------------

    def create(self, path: str, mode: int, flags: int) -> int:
        with self._powered():
            full = self._full(path)
            try:
                before: os.stat_result | None = os.lstat(full)
            except FileNotFoundError:
                before = None
            if before is None:
                self._folder_changing(*self._parent(path))
            elif flags & os.O_TRUNC and not flags & os.O_EXCL:
                self._file_changing(self._ino(before.st_ino), before, full)
            fd = os.open(full, flags | os.O_CREAT, mode)
            if before is None:
                st = os.fstat(fd)
                # A new file: the disk holds no byte of it until it is synced.
                self.dirty_files[self._ino(st.st_ino)] = FileOnDisk(
                    b"", st.st_mtime_ns, st.st_ctime_ns
                )
            return fd

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        with self._powered():
            st = os.fstat(fh)
            self._file_changing(self._ino(st.st_ino), st, f"/proc/self/fd/{fh}")
            return os.pwrite(fh, data, offset)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        with self._powered():
            target: str | int = self._full(path) if path is not None else fh  # type: ignore[assignment]
            st = os.stat(target) if isinstance(target, int) else os.lstat(target)
            readable = target if isinstance(target, str) else f"/proc/self/fd/{target}"
            self._file_changing(self._ino(st.st_ino), st, readable)
            os.truncate(target, length)
            return 0

    def fallocate(self, path: str | None, mode: int, offset: int, size: int, fh: int) -> int:
        """Room made ahead (mode 0: the size grows, the new bytes read as zeros): like a write,
        the disk holds it only once the file is synced."""
        with self._powered():
            if mode != 0:
                raise OSError(errno.EOPNOTSUPP, "only plain fallocate is modelled")
            st = os.fstat(fh)
            self._file_changing(self._ino(st.st_ino), st, f"/proc/self/fd/{fh}")
            os.posix_fallocate(fh, offset, size)
            return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        with self._powered():
            full = self._full(path)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                self._file_changing(self._ino(st.st_ino), st, full)
            if times is None:
                os.utime(full)
            else:
                os.utime(full, ns=times)
            return 0

    def chmod(self, path: str, mode: int) -> int:
        with self._powered():
            os.chmod(self._full(path), mode)
            return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        with self._powered():
            os.chown(self._full(path), uid, gid)
            return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        with self._powered():
            self._sprung("fdatasync" if datasync else "fsync")
            st = os.fstat(fh)
            ino = self._ino(st.st_ino)
            self.counts["fdatasync" if datasync else "fsync"] += 1
            on_disk = self.dirty_files.get(ino)
            if on_disk is None:
                return 0
            if datasync:
                # fdatasync makes the bytes (and the size) durable, not the times.
                with open(f"/proc/self/fd/{fh}", "rb") as f:
                    on_disk.data = f.read()
                if st.st_mtime_ns == on_disk.mtime_ns and self._ctime(ino, st) == on_disk.ctime_ns:
                    del self.dirty_files[ino]
            else:
                del self.dirty_files[ino]
            return 0

    # --- changing folders -------------------------------------------------------------------

    def mkdir(self, path: str, mode: int) -> int:
        with self._powered():
            self._folder_changing(*self._parent(path))
            full = self._full(path)
            os.mkdir(full, mode)
            # A new folder holds no entry on the disk until it is fsynced.
            self.dirty_folders[self._ino(os.lstat(full).st_ino)] = FolderOnDisk({})
            return 0

    def rmdir(self, path: str) -> int:
        with self._powered():
            self._folder_changing(*self._parent(path))
            full = self._full(path)
            st = os.lstat(full)
            self._folder_changing(self._ino(st.st_ino), full)
            os.rmdir(full)
            # Its backing inode is free and may be reused; what the disk holds of it stays.
            self.ino_of.pop(st.st_ino, None)
            return 0

    def _bury(self, ino: int, full: str, *, move: bool) -> None:
        """Keep an inode that loses its last visible name alive under the grave folder, so
        a cut can bring it back and its backing inode number is not reused meanwhile."""
        grave = os.path.join(self.grave, str(ino))
        if os.path.lexists(grave):
            if move:
                os.unlink(full)
        elif move:
            os.rename(full, grave)
        else:
            os.link(full, grave)

    def unlink(self, path: str) -> int:
        with self._powered():
            self._folder_changing(*self._parent(path))
            full = self._full(path)
            self._bury(self._ino(os.lstat(full).st_ino), full, move=True)
            return 0

    def link(self, target: str, source: str) -> int:
        with self._powered():
            self._folder_changing(*self._parent(target))
            os.link(self._full(source), self._full(target))
            return 0

    def rename(self, old: str, new: str) -> int:
        with self._powered():
            self._sprung("rename")
            old_full, new_full = self._full(old), self._full(new)
            moved = self._ino(os.lstat(old_full).st_ino)
            source = self._parent(old)
            target = self._parent(new)
            self._folder_changing(*source)
            if target[0] != source[0]:
                self._folder_changing(*target)
            try:
                replaced: os.stat_result | None = os.lstat(new_full)
            except FileNotFoundError:
                replaced = None
            if replaced is not None:
                replaced_ino = self._ino(replaced.st_ino)
                if stat.S_ISDIR(replaced.st_mode):
                    self._folder_changing(replaced_ino, new_full)
                elif replaced_ino != moved:
                    self._bury(replaced_ino, new_full, move=False)
            os.rename(old_full, new_full)
            if replaced is not None and stat.S_ISDIR(replaced.st_mode):
                self.ino_of.pop(replaced.st_ino, None)
            if target[0] != source[0]:
                self.pending_moves.append(
                    (source[0], os.path.basename(old), target[0], os.path.basename(new), moved)
                )
            return 0

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        with self._powered():
            self._sprung("fsyncdir")
            ino = self._ino(os.fstat(fh).st_ino)
            self.counts["fsyncdir"] += 1
            self.dirty_folders.pop(ino, None)
            # A rename between folders is durable in both once either is synced (a journal
            # commits it as one transaction), so the other folder's disk state takes it too.
            still_pending = []
            for move in self.pending_moves:
                source, old_name, target, new_name, moved = move
                if ino not in (source, target):
                    still_pending.append(move)
                    continue
                other = self.dirty_folders.get(target if ino == source else source)
                if other is None:
                    continue
                if ino == source:
                    other.entries[new_name] = moved
                elif other.entries.get(old_name) == moved:
                    del other.entries[old_name]
            self.pending_moves = still_pending
            return 0

    def symlink(self, target: str, source: str) -> int:
        raise OSError(errno.EOPNOTSUPP, "powerfs has no symbolic links")

    # --- the power --------------------------------------------------------------------------

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        with self._mutex:
            if op == "freeze":
                self.frozen = True
                return {"ok": True}
            if op == "cut":
                started = time.monotonic()
                lost = self._cut(float(request.get("writeback", 0.0)), request.get("seed", 0))
                self.frozen = False
                return {"ok": True, "seconds": round(time.monotonic() - started, 4), **lost}
            if op == "sync":
                self._all_durable()
                return {"ok": True}
            if op == "stats":
                return {"ok": True, "frozen": self.frozen, **self.counts}
            if op == "cut_at":
                # The power goes off at the call named (``fsync``, ``fdatasync``, ``rename``,
                # ``fsyncdir``) once ``skip`` of them have passed, counting only from the first
                # call named by ``after`` on (when given).
                self.seen.clear()
                self.trap = {
                    "call": str(request["call"]),
                    "skip": int(request.get("skip", 0)),
                    **({"after": str(request["after"])} if request.get("after") else {}),
                }
                return {"ok": True}
        return {"ok": False, "error": f"unknown request {request!r}"}

    def _all_durable(self) -> None:
        self.dirty_files.clear()
        self.dirty_folders.clear()
        self.pending_moves.clear()
        for name in os.listdir(self.grave):
            path = os.path.join(self.grave, name)
            if os.lstat(path).st_nlink == 1:
                self.ino_of.pop(os.lstat(path).st_ino, None)
            os.unlink(path)

    def _cut(self, writeback: float, seed: object) -> dict[str, int]:
        """Rewrite the backing folder to what the disk holds (plus what was written back)."""
        rng = random.Random(str(seed))
        counts: Counter[str] = Counter()

        # 1. The tree as the running system sees it, and where each inode is now.
        current: dict[int, dict[str, int]] = {}
        where: dict[int, str] = {ROOT_INO: self.backing}
        is_dir: dict[int, bool] = {ROOT_INO: True}

        def walk(folder: int, full: str) -> None:
            entries: dict[str, int] = {}
            with os.scandir(full) as listing:
                for entry in listing:
                    ino = self._ino(entry.inode())
                    entries[entry.name] = ino
                    where.setdefault(ino, entry.path)
                    is_dir[ino] = entry.is_dir(follow_symlinks=False)
            current[folder] = entries
            for name, ino in entries.items():
                if is_dir[ino]:
                    walk(ino, os.path.join(full, name))

        walk(ROOT_INO, self.backing)
        for name in os.listdir(self.grave):
            where.setdefault(int(name), os.path.join(self.grave, name))
            is_dir.setdefault(int(name), False)
        for folder in self.dirty_folders:
            is_dir[folder] = True

        # 2. What reached the disk besides what was synced: folders joined by a pending
        #    rename are decided together, so a rename is all or nothing.
        group = {folder: folder for folder in self.dirty_folders}

        def find(folder: int) -> int:
            while group[folder] != folder:
                folder = group[folder]
            return folder

        for source, _, target, _, _ in self.pending_moves:
            if source in group and target in group:
                group[find(source)] = find(target)
        decided: dict[int, bool] = {}
        kept_folders = set()
        for folder in self.dirty_folders:
            root = find(folder)
            if root not in decided:
                decided[root] = writeback > 0 and rng.random() < writeback
            if decided[root]:
                kept_folders.add(folder)
        fate: dict[int, str] = {}
        for ino in self.dirty_files:
            if writeback > 0 and rng.random() < writeback:
                fate[ino] = rng.choice((KEPT, SIZE_ONLY))
            else:
                fate[ino] = LOST
            counts[f"files_{fate[ino]}"] += 1
        counts["folders_kept"] = len(kept_folders)
        counts["folders_lost"] = len(self.dirty_folders) - len(kept_folders)

        def entries_on_disk(folder: int) -> dict[str, int]:
            on_disk = self.dirty_folders.get(folder)
            if on_disk is not None and folder not in kept_folders:
                return on_disk.entries
            return current.get(folder, {})

        # A folder with nothing dirty in it, at any depth, moves into the new tree whole.
        clean: dict[int, bool] = {}

        def is_clean(folder: int) -> bool:
            if folder not in clean:
                clean[folder] = folder not in self.dirty_folders and all(
                    is_clean(ino) if is_dir[ino] else ino not in self.dirty_files
                    for ino in current.get(folder, {}).values()
                )
            return clean[folder]

        is_clean(ROOT_INO)

        # 3. Build the tree the disk holds beside the old one, moving or linking what is kept.
        next_root = os.path.join(self.state, "next")
        shutil.rmtree(next_root, ignore_errors=True)
        os.mkdir(next_root)
        made: dict[int, int] = {os.lstat(next_root).st_ino: ROOT_INO}
        placed: dict[int, str] = {ROOT_INO: next_root}
        # The ctime each placed file shows, set once the old tree is gone (dropping its old
        # names moves the backing ctime again).
        settle: dict[int, tuple[str, int]] = {}
        moved_whole: list[tuple[str, str]] = []

        def locate(ino: int) -> str | None:
            path = where.get(ino)
            if path is None:
                return None
            for old, new in moved_whole:
                if path.startswith(old + os.sep):
                    return new + path[len(old) :]
            return path

        def place_file(ino: int, target: str) -> None:
            if ino in placed:
                os.link(placed[ino], target)
                return
            source = locate(ino)
            on_disk = self.dirty_files.get(ino)
            if source is None:  # no backing inode left: made again from the disk's record
                assert on_disk is not None, f"inode {ino} is nowhere"
                with open(target, "wb") as f:
                    f.write(on_disk.data)
                os.utime(target, ns=(on_disk.mtime_ns, on_disk.mtime_ns))
                made[os.lstat(target).st_ino] = ino
                settle[ino] = (target, on_disk.ctime_ns)
                placed[ino] = target
                return
            before = os.lstat(source)
            shown_ctime = self._ctime(ino, before)
            os.link(source, target)
            placed[ino] = target
            mtime = before.st_mtime_ns
            if on_disk is not None and fate[ino] != KEPT:
                if fate[ino] == LOST:
                    data, mtime, shown_ctime = on_disk.data, on_disk.mtime_ns, on_disk.ctime_ns
                else:  # the new size and times reached the disk, the new bytes did not
                    data = on_disk.data[: before.st_size].ljust(before.st_size, b"\0")
                with open(target, "r+b") as f:
                    f.write(data)
                    f.truncate()
                os.utime(target, ns=(before.st_atime_ns, mtime))
            settle[ino] = (target, shown_ctime)

        def build(folder: int, dest: str, above: frozenset[int]) -> None:
            for name, ino in entries_on_disk(folder).items():
                target = os.path.join(dest, name)
                if not is_dir.get(ino, False):
                    place_file(ino, target)
                    continue
                if ino in placed or ino in above:
                    raise RuntimeError(f"folder inode {ino} would be in the tree twice")
                source = locate(ino)
                before = os.lstat(source) if source is not None else None
                if source is not None and before is not None and clean.get(ino):
                    os.rename(source, target)
                    moved_whole.append((source, target))
                    placed[ino] = target
                    settle[ino] = (target, self._ctime(ino, before))
                    continue
                os.mkdir(target)
                made[os.lstat(target).st_ino] = ino
                placed[ino] = target
                build(ino, target, above | {ino})
                if before is not None:  # a folder's times are kept too, though no test needs them
                    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
                    settle[ino] = (target, self._ctime(ino, before))

        build(ROOT_INO, next_root, frozenset({ROOT_INO}))

        # 4. The new tree replaces the old; inodes left behind are gone.
        old_root = os.path.join(self.state, "old")
        shutil.rmtree(old_root, ignore_errors=True)
        os.rename(self.backing, old_root)
        os.rename(next_root, self.backing)
        ino_of: dict[int, int] = {os.lstat(self.backing).st_ino: ROOT_INO}
        names_after = 0

        def remap(full: str) -> None:
            nonlocal names_after
            with os.scandir(full) as listing:
                for entry in listing:
                    names_after += 1
                    backing_ino = entry.inode()
                    ino = made.get(backing_ino)
                    ino_of[backing_ino] = self.ino_of[backing_ino] if ino is None else ino
                    if entry.is_dir(follow_symlinks=False):
                        remap(entry.path)

        remap(self.backing)
        shutil.rmtree(old_root)
        shutil.rmtree(self.grave)
        os.mkdir(self.grave)
        self.ino_of = ino_of
        alive = set(ino_of.values())
        self.shown_ctime = {k: v for k, v in self.shown_ctime.items() if k in alive}
        for ino, (placed_at, shown_ctime) in settle.items():
            now_at = self.backing + placed_at[len(next_root) :]
            self.shown_ctime[ino] = (os.lstat(now_at).st_ctime_ns, shown_ctime)
        self.dirty_files.clear()
        self.dirty_folders.clear()
        self.pending_moves.clear()
        counts["names_before"] = sum(len(entries) for entries in current.values())
        counts["names_after"] = names_after
        return dict(counts)

    # --- mounting ---------------------------------------------------------------------------

    def init_with_config(self, conn_info: Any, config: Any) -> None:
        # The kernel must not answer from caches: after a cut the backing folder differs from
        # whatever it saw, and a disk coming back from a power cut starts with no cache.
        if config is not None:
            config.entry_timeout = 0.0
            config.negative_timeout = 0.0
            config.attr_timeout = 0.0
            config.use_ino = 1
            config.hard_remove = 1


def serve_control(fs: PowerCutFs, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    while True:
        conn, _ = server.accept()
        with conn, conn.makefile("rwb") as stream:
            for line in stream:
                try:
                    reply = fs.control(json.loads(line))
                except Exception as exc:  # a model bug: said, not swallowed
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                stream.write(json.dumps(reply).encode() + b"\n")
                stream.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: powerfs.py BACKING STATE MOUNTPOINT", file=sys.stderr)
        return 2
    backing, state, mountpoint = (os.path.abspath(arg) for arg in argv[1:])
    fs = PowerCutFs(backing, state)
    control = threading.Thread(
        target=serve_control, args=(fs, os.path.join(state, "control.sock")), daemon=True
    )
    control.start()
    mfusepy.FUSE(fs, mountpoint, foreground=True, fsname="powercut", subtype="powercut")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
