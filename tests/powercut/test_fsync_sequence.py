"""Where the writers call fsync, read off strace: one write of each kind, compared with the
sequences docs/format.md documents ("The atomic writer", "The journal") and with what the
power-cut model needs.

A power cut lands at a random moment, so a refactor that drops one fsync can pass a hundred
cuts by luck; this test fails at once. The rules the model needs (docs/testing.md):

- a file is renamed or linked to its name only after an ``fsync``/``fdatasync`` of its bytes, or
  a ``syncfs`` of its file system (a catalog put's one flush for all its files);
- after the rename or link, its folder is fsynced before the call returns, unless what the file
  holds is also in a journal the call synced and keeps (a fold of an ended branch: a cut that
  undoes the rename loses nothing);
- a folder made by the call is named durably: its parent is fsynced before the call returns;
- a journal appended to is synced (``fdatasync``) before the call returns, and a journal the
  call creates has its folder fsynced too (its name is new);
- a journal is removed only after every document the call wrote is durable (its folder
  fsynced): the journal's records are in those documents.

The run's stored merge (``.merged.json``) is a cache a reader checks before use, written without
any of this.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import FUSE_SCRIPT

ONE_WRITE = Path(__file__).with_name("one_write.py")
TRACED = (
    "fsync,fdatasync,syncfs,rename,renameat,renameat2,open,openat,openat2,mkdir,mkdirat,link,linkat,"
    "unlink,unlinkat"
)
PROC_FD = re.compile(r"^/proc/self/fd/(\d+)$")
TEMP = re.compile(r"(\.[^/]*\.tmp-)\d+-\d+-\d+$")
JOURNAL = re.compile(r"(\.journals/)\d+-\d+-[0-9a-f]+\.journal$")
CALL = re.compile(r"^(?P<pid>\d+) +(?P<name>\w+)\((?P<args>.*)\) += (?P<result>-?\d+)")

# The documented sequence of each write (paths relative to the test's folder; folders the
# write creates, and the fsyncs that name them, are checked by the rules instead, since how
# the parents are walked is the writer's business).
EXPECTED = {
    "chunked-fs": {
        "create": [
            "create-new logs/r/.RunLog.json.tmp-*",
            "fdatasync logs/r/.RunLog.json.tmp-*",
            "link logs/r/.RunLog.json.tmp-* -> logs/r/RunLog.json",
            "unlink logs/r/.RunLog.json.tmp-*",
            "fsync logs/r",
            "create-new logs/r/..layout.tmp-*",
            "fdatasync logs/r/..layout.tmp-*",
            "rename logs/r/..layout.tmp-* -> logs/r/.layout",
            "fsync logs/r",
        ],
        # The first write of a process to a run: its journal is created (and, the first time
        # in the run, the journals' folder), appended to and synced, and its name made durable.
        "step": [
            "create logs/r/.lock",
            "create-new logs/r/.journals/<journal>",
            "fdatasync logs/r/.journals/<journal>",
            "fsync logs/r/.journals",
            "fsync logs/r",
            # the branch of the next write is put: one more append
            "create logs/r/.lock",
            "fdatasync logs/r/.journals/<journal>",
        ],
        # A branch ends: the record is appended and synced, then the branch is folded into its
        # document and the step holding it into RunLog.json (bytes synced, renamed; the folder
        # is not fsynced: the journal keeps every record until the run's end).
        "branch-end": [
            "create logs/r/.lock",
            "fdatasync logs/r/.journals/<journal>",
            "create logs/r/.lock",
            "create-new logs/r/.BranchLog-s.b.json.tmp-*",
            "fdatasync logs/r/.BranchLog-s.b.json.tmp-*",
            "rename logs/r/.BranchLog-s.b.json.tmp-* -> logs/r/BranchLog-s.b.json",
            "create-new logs/r/.RunLog.json.tmp-*",
            "fdatasync logs/r/.RunLog.json.tmp-*",
            "rename logs/r/.RunLog.json.tmp-* -> logs/r/RunLog.json",
        ],
        # The run ends: the record is appended and synced, then folded into RunLog.json, the
        # folder fsynced (the names of every document folded so far), then the journal goes.
        "status": [
            "create logs/r/.lock",
            "fdatasync logs/r/.journals/<journal>",
            "create logs/r/.lock",
            "create-new logs/r/.RunLog.json.tmp-*",
            "fdatasync logs/r/.RunLog.json.tmp-*",
            "rename logs/r/.RunLog.json.tmp-* -> logs/r/RunLog.json",
            "fsync logs/r",
            "unlink logs/r/.journals/<journal>",
            # (then `.journals` itself, by `unlinkat` relative to the run folder, not traced
            # here: removing an empty folder needs no sync, see docs/format.md)
            # the run's merge, stored beside it: a cache, not synced (a reader checks its
            # length and hash, and the documents' stats, before using it)
            "create-new logs/r/..merged.json.tmp-*",
            "rename logs/r/..merged.json.tmp-* -> logs/r/.merged.json",
        ],
    },
    "file-system": {
        "create": [
            "create-new logs/.r.json.tmp-*",
            "fdatasync logs/.r.json.tmp-*",
            "link logs/.r.json.tmp-* -> logs/r.json",
            "unlink logs/.r.json.tmp-*",
            "fsync logs",
        ],
        **{
            write: [
                "create logs/.r.lock",
                "create-new logs/.r.json.tmp-*",
                "fdatasync logs/.r.json.tmp-*",
                "rename logs/.r.json.tmp-* -> logs/r.json",
                "fsync logs",
            ]
            for write in ("branch-end", "status")
        },
        # the step, then the branch of the next write: two whole-file writes
        "step": [
            "create logs/.r.lock",
            "create-new logs/.r.json.tmp-*",
            "fdatasync logs/.r.json.tmp-*",
            "rename logs/.r.json.tmp-* -> logs/r.json",
            "fsync logs",
        ]
        * 2,
    },
    # A put's files are flushed all at once (docs/catalogs.md, "Durable puts"), then the
    # renames, then one fsync per folder; a put of at most 4 files flushes each with its own
    # fdatasync rather than a syncfs of the whole file system (the twelve-file put below).
    "catalog": {
        write: [
            "create-new catalog/r/.data.bin.tmp-*",
            "fdatasync catalog/r/.data.bin.tmp-*",
            "rename catalog/r/.data.bin.tmp-* -> catalog/r/data.bin",
            "fsync catalog/r",
        ]
        for write in ("put", "put-again")
    },
}
MADE = {
    "chunked-fs": {"create": ["logs", "logs/r"], "step": ["logs/r/.journals"]},
    "file-system": {"create": ["logs"]},
    "catalog": {"put": ["catalog", "catalog/r"]},
}


def _strace() -> str:
    problem = None
    if shutil.which("strace") is None:
        done = subprocess.run(["bash", str(FUSE_SCRIPT)], capture_output=True, text=True)
        if done.returncode != 0:
            problem = f"{FUSE_SCRIPT.name} exited {done.returncode}: {done.stderr.strip()}"
    found = shutil.which("strace")
    if found is None:
        problem = problem or "strace is not installed"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the fsync sequence test is required in CI: {problem}")
        pytest.skip(f"no strace: {problem}")
    assert found is not None
    return found


def _strings(args: str) -> list[str]:
    return [
        bytes(s, "utf-8").decode("unicode_escape") for s in re.findall(r'"((?:[^"\\]|\\.)*)"', args)
    ]


def trace_events(trace: str, base: Path) -> dict[str, list[str]]:
    """The trace as normalised events per write: ``create-new P`` (O_EXCL), ``create P``,
    ``fsync P``, ``fdatasync P``, ``rename P -> Q``, ``link P -> Q``, ``unlink P``,
    ``mkdir P``, with P relative to ``base``, temp names as ``.<name>.tmp-*``."""
    lines: list[str] = []
    unfinished: dict[str, str] = {}
    for raw in trace.splitlines():
        pid, _, rest = raw.partition(" ")
        rest = rest.strip()
        if rest.endswith("<unfinished ...>"):
            unfinished[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        resumed = re.match(r"<\.\.\. \w+ resumed>(.*)", rest)
        if resumed:
            rest = unfinished.pop(pid, "") + resumed.group(1)
        lines.append(f"{pid} {rest}")

    prefix = str(base) + "/"

    def rel(path: str) -> str | None:
        if path == str(base):
            return "."
        if not path.startswith(prefix):
            return None
        return JOURNAL.sub(r"\1<journal>", TEMP.sub(r"\1*", path[len(prefix) :]))

    fds: dict[str, str] = {}  # one process: its threads share the descriptor table
    # Unnamed files a fold writes its document into (O_TMPFILE, rust/spares.rs), made ahead by
    # a thread of their own at moments that vary: each shows as `create-new <folder>/<spare>`
    # where it is first used.
    spares: dict[str, str] = {}
    writes: dict[str, list[str]] = {}
    current: list[str] | None = None

    used: dict[str, str] = {}  # spares shown already, by descriptor

    def spare(fd: str) -> str | None:
        where = spares.pop(fd, None)
        if where is None:
            return used.get(fd) or rel(fds.get(fd, ""))
        if current is not None:
            current.append(f"create-new {where}")
        used[fd] = where
        return where

    for line in lines:
        call = CALL.match(line)
        if call is None:
            continue
        name, args, result = call["name"], call["args"], int(call["result"])
        paths = _strings(args)
        if name == "openat2" and paths and not paths[0].startswith("/"):
            # The core opens files below a folder it holds open (openat2, no links followed):
            # the path is relative to that folder's descriptor.
            folder = fds.get(args.split(",", 1)[0].strip())
            if folder is None:
                continue
            paths[0] = f"{folder}/{paths[0]}"
            name = "openat"
        if name == "openat" and paths and paths[0].startswith("/powercut-mark-"):
            current = writes.setdefault(paths[0][len("/powercut-mark-") :], [])
            continue
        if result >= 0 and name in ("open", "openat"):
            used.pop(str(result), None)  # a descriptor number used again
            if "O_TMPFILE" in args:
                folder = rel(paths[0])
                if folder is not None:
                    spares[str(result)] = f"{folder}/<spare>"
                continue
        if result < 0 or current is None:
            continue
        if name in ("open", "openat"):
            fds[str(result)] = paths[0]
            spares.pop(str(result), None)
            where = rel(paths[0])
            if where is not None and "O_CREAT" in args:
                current.append(f"{'create-new' if 'O_EXCL' in args else 'create'} {where}")
        elif name in ("fsync", "fdatasync"):
            where = spare(args.strip())
            if where is not None:
                current.append(f"{name} {where}")
        elif name == "syncfs":
            # The whole file system the descriptor is on: every file in the test's folder.
            if rel(fds.get(args.strip(), "")) is not None:
                current.append("syncfs")
        elif name in ("rename", "renameat", "renameat2", "link", "linkat"):
            named = PROC_FD.match(paths[0]) if paths else None
            source = spare(named.group(1)) if named else rel(paths[0])
            target = rel(paths[1])
            if source is not None and target is not None:
                current.append(f"{'link' if 'link' in name else 'rename'} {source} -> {target}")
        elif name in ("unlink", "unlinkat", "mkdir", "mkdirat"):
            where = rel(paths[0])
            if where is not None:
                current.append(f"{name.removesuffix('at')} {where}")
    return writes


def rule_breaches(events: list[str]) -> list[str]:
    """Where one write breaks what the power-cut model needs (the module docstring)."""
    breaches = []
    synced_since_create: dict[str, bool] = {}
    renamed_folders: list[str] = []
    for n, event in enumerate(events):
        kind, _, rest = event.partition(" ")
        later = events[n + 1 :]
        earlier = events[:n]
        if kind == "create-new" and ".journals/" in rest:
            # a journal keeps its name: its bytes and its name must be durable on return
            if f"fdatasync {rest}" not in later and f"fsync {rest}" not in later:
                breaches.append(f"{event}: the journal is not synced after")
            folder = os.path.dirname(rest)
            if f"fsync {folder}" not in later:
                breaches.append(f"{event}: its folder {folder} is not fsynced after")
        if kind in ("create-new", "create"):
            synced_since_create[rest] = False
        elif kind in ("fsync", "fdatasync"):
            synced_since_create[rest] = True
        elif kind == "syncfs":
            synced_since_create = dict.fromkeys(synced_since_create, True)
        elif kind in ("rename", "link"):
            source, target = rest.split(" -> ")
            if os.path.basename(target) == ".merged.json":
                continue  # a cache, checked before use (docs/format.md): never synced
            if not synced_since_create.get(source, False):
                breaches.append(f"{event}: the bytes were not synced before")
            synced_since_create[target] = synced_since_create.get(source, False)
            folder = os.path.dirname(target) or "."
            journal_kept = any(
                e.startswith("fdatasync ") and ".journals/" in e for e in earlier
            ) and not any(e.startswith("unlink ") and ".journals/" in e for e in later)
            if f"fsync {folder}" not in later and not journal_kept:
                breaches.append(f"{event}: its folder {folder} is not fsynced after")
            renamed_folders.append(folder)
        elif kind == "unlink" and ".journals/" in rest:
            for folder in renamed_folders:
                last_rename = max(
                    i for i, e in enumerate(earlier) if e.startswith(("rename ", "link "))
                )
                if f"fsync {folder}" not in earlier[last_rename:]:
                    breaches.append(f"{event}: before the documents in {folder} are durable")
        elif kind == "mkdir":
            parent = os.path.dirname(rest) or "."
            if f"fsync {parent}" not in later:
                breaches.append(f"{event}: the parent {parent} is not fsynced after")
    return breaches


def as_documented(events: list[str]) -> list[str]:
    """A fold's document written into a spare (made ahead, then linked as the document, or
    linked under a temp name and renamed over it) as the same write through a temp file: the
    documented sequence either way. Whether a spare was ready depends on a thread's timing; the
    rules are checked on the events as they were."""
    out: list[str] = []
    pending: list[str] = []  # a spare's create and sync, until its link says what it became
    for event in events:
        kind, _, rest = event.partition(" ")
        if rest.split(" -> ")[0].endswith("/<spare>"):
            if kind == "link":
                source, target = rest.split(" -> ")
                name = os.path.basename(target)
                temp = target if ".tmp-" in name else f"{os.path.dirname(target)}/.{name}.tmp-*"
                out += [e.replace(source, temp) for e in pending]
                if temp != target:
                    out.append(f"rename {temp} -> {target}")
                pending = []
            else:
                pending.append(event)
            continue
        out.append(event)
    return out + pending


def without_folder_making(events: list[str]) -> list[str]:
    """The events after the folders were made: the mkdirs and the fsyncs before the first
    file is created are the folder-making, checked by the rules."""
    first_file = next((n for n, e in enumerate(events) if e.startswith("create")), len(events))
    return [e for e in events[first_file:] if not e.startswith("mkdir ")]


def traced_writes(kind: str, folder: Path, *options: str) -> dict[str, list[str]]:
    """The events of each write of one_write.py, run under strace."""
    strace = _strace()
    trace = folder / "trace"
    base = folder / "work"
    base.mkdir()
    command = [strace, "-f", "-qq", "-e", f"trace={TRACED}", "-o", str(trace)]
    command += [sys.executable, str(ONE_WRITE), kind, str(base), *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.fail(f"strace cannot trace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    writes = trace_events(trace.read_text(), base)
    assert set(EXPECTED[kind]) <= set(writes), f"markers missing from the trace: {writes}"
    return writes


@pytest.mark.parametrize("kind", ["chunked-fs", "file-system", "catalog"])
def test_every_write_syncs_where_a_power_cut_needs_it(kind: str, tmp_path: Path) -> None:
    writes = traced_writes(kind, tmp_path)
    for write, expected in EXPECTED[kind].items():
        events = writes[write]
        assert rule_breaches(events) == [], f"{kind} {write}: {events}"
        made = [e.split(" ", 1)[1] for e in events if e.startswith("mkdir ")]
        assert made == MADE.get(kind, {}).get(write, []), f"{kind} {write} made {made}"
        assert as_documented(without_folder_making(events)) == expected, f"{kind} {write}: {events}"


def test_a_write_without_fsync_breaks_the_rules(tmp_path: Path) -> None:
    """The same trace of a store configured with ``fsync: false`` fails every rule."""
    writes = traced_writes("chunked-fs", tmp_path, "nofsync")
    breaches = rule_breaches(writes["create"])
    assert any("not synced before" in b for b in breaches), breaches
    assert any("folder logs/r is not fsynced" in b for b in breaches), breaches
    assert any("parent logs is not fsynced" in b for b in breaches), breaches


def test_the_rules_catch_a_missing_fsync() -> None:
    """The checker itself: each rule fails when its fsync is dropped."""
    good = [
        "mkdir logs",
        "fsync .",
        "create-new logs/.a.tmp-*",
        "fdatasync logs/.a.tmp-*",
        "rename logs/.a.tmp-* -> logs/a",
        "fsync logs",
    ]
    assert rule_breaches(good) == []
    for dropped in ("fsync .", "fdatasync logs/.a.tmp-*", "fsync logs"):
        assert rule_breaches([e for e in good if e != dropped]), dropped
    journal = [
        "create-new logs/r/.journals/<journal>",
        "fdatasync logs/r/.journals/<journal>",
        "fsync logs/r/.journals",
        "create-new logs/r/.RunLog.json.tmp-*",
        "fdatasync logs/r/.RunLog.json.tmp-*",
        "rename logs/r/.RunLog.json.tmp-* -> logs/r/RunLog.json",
        "fsync logs/r",
        "unlink logs/r/.journals/<journal>",
    ]
    assert rule_breaches(journal) == []
    for dropped in ("fdatasync logs/r/.journals/<journal>", "fsync logs/r/.journals"):
        assert rule_breaches([e for e in journal if e != dropped]), dropped
    # the journal removed before the folded document is durable
    early = [*journal[:6], journal[7], journal[6]]
    assert any("before the documents" in b for b in rule_breaches(early)), early
    # a branch's fold: the folder need not be fsynced while the synced journal stays...
    branch = [
        "fdatasync logs/r/.journals/<journal>",
        "create-new logs/r/.BranchLog-b.json.tmp-*",
        "fdatasync logs/r/.BranchLog-b.json.tmp-*",
        "rename logs/r/.BranchLog-b.json.tmp-* -> logs/r/BranchLog-b.json",
    ]
    assert rule_breaches(branch) == []
    # ... but its bytes must be synced, and without a synced journal the folder must be too
    assert rule_breaches([e for e in branch if e != branch[2]])
    assert rule_breaches(branch[1:])
    # a spare linked under a temp name then renamed: the temp name holds the spare's bytes
    spare = [
        "create-new logs/r/<spare>",
        "fdatasync logs/r/<spare>",
        "link logs/r/<spare> -> logs/r/.R.tmp-*",
        "rename logs/r/.R.tmp-* -> logs/r/R",
        "fsync logs/r",
    ]
    assert rule_breaches(spare) == []
    assert rule_breaches([e for e in spare if e != spare[1]])
    assert as_documented(spare) == [
        "create-new logs/r/.R.tmp-*",
        "fdatasync logs/r/.R.tmp-*",
        "rename logs/r/.R.tmp-* -> logs/r/R",
        "fsync logs/r",
    ]


def test_a_put_of_many_files_flushes_once(tmp_path: Path) -> None:
    """Twelve files in three folders: every temp file is written, then one syncfs, then the
    renames, then one fsync per folder, and no fdatasync of any file."""
    writes = traced_writes("catalog", tmp_path)
    events = writes["put-many"]
    assert rule_breaches(events) == [], events
    kinds = [e.split(" ", 1)[0] for e in events]
    first_rename = kinds.index("rename")
    assert kinds.count("syncfs") == 1, events
    assert "fdatasync" not in kinds, events
    assert kinds.index("syncfs") < first_rename, events
    created = [e for e in events if e.startswith("create-new ")]
    assert len(created) == 12 and all(events.index(e) < first_rename for e in created), events
    renames = [n for n, kind in enumerate(kinds) if kind == "rename"]
    assert len(renames) == 12, events
    folder_syncs = [e for e in events[renames[-1] :] if e.startswith("fsync ")]
    assert sorted(folder_syncs) == [f"fsync catalog/r/many/{d}" for d in "abc"], events
    # the folders made (catalog/r/many and its three) were named durably: the rules say so
    assert all(f"fsync catalog/r/many/{d}" in events for d in "abc"), events
