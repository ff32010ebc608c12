"""Hostile trees for the fuzz test: a log folder and a catalog folder holding runs our own stores
wrote, then changed by someone else who can write there.

A tree is built from a template (runs written once per layout by the real stores and
catalogs, its files dated three days back so gc has something to delete) and then mutated:
files and folders replaced by symlinks (to a sentinel outside, a folder outside, ``/dev/zero``,
nothing), FIFOs and unix sockets, entries with bad names (terminal escapes, 250 bytes, invalid
UTF-8), oversized and deeply nested documents, planted ``.lock`` stamps, journals,
``.merged.json`` snapshots, hash caches and manifests.

Beside the trees sit the sentinels: files and folders outside every folder a call is given,
that the symlinks point to. ``snapshot_outside`` records them, so a call that writes, deletes
or reads through a link out of its folders is seen; every sentinel holds ``TOKEN``, which must
never show up in a file inside the trees.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import socket
import stat
import struct
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import blake3
import yaml
from hypothesis import strategies as st

from runlog_store import (
    BaseCatalog,
    BaseRunLogStore,
    JsonParameter,
    MetricParameter,
    StepAttempt,
    create_catalog,
    create_store,
)

TOKEN = "sentinel-7f3a9c-outside-every-tree"
STORE_LAYOUTS = ("file-system", "chunked-fs")
CATALOG_LAYOUTS = ("file-system", "content-fs")
ENDED_RUNS = ("run-a", "run-b")
LIVE_RUN = "run-live"
RUNS = (*ENDED_RUNS, LIVE_RUN)
AGE = timedelta(days=3)  # how old the template's runs are: gc --older-than 1d deletes them
COMPUTE_FILES = {"input.csv": b"a,b\n1,2\n", "model.bin": bytes(range(256)) * 8}
# The name of a stored content as content-fs lays it out (<2 hex>/<62 hex>): a sweep that
# follows a symlinked objects/<xx> folder out of the catalog would take this file for garbage.
OBJECT_NAME = "0" * 62
I64_MAX = 2**63 - 1

# --- names and bytes someone else may leave ---------------------------------------------------

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[1;1H\x9b31m"  # set the title, clear, move, C1 CSI
BAD_NAMES: tuple[bytes, ...] = (
    b"\x1b]0;owned\x07\x1b[2J",  # terminal escapes: retitle and clear the reader's terminal
    b"\x1b[31mred\x1b[0m",
    b"r" * 250,  # as long as a name may be, so nothing can be added to it
    b"run-\xff\xfe",  # not UTF-8
    b"line\nbreak",
    b"-rf",
    b"\xc2\x9b31mC1",  # the one-byte CSI of C1, as UTF-8
)
# Names of files a pipeline's compute folder may hold, for puts: a long one (whose temp name
# would not fit in 255 bytes), escapes, not UTF-8.
COMPUTE_NAMES: tuple[bytes, ...] = (
    b"a" * 226 + b".csv",
    b"\x1b]0;owned\x07.csv",
    b"data-\xff.bin",
    b"new\nline.txt",
)
SYMLINK_DESTINATIONS = (
    "outside/secret.txt",
    "outside/dir",
    "outside/foreign-run.json",
    "/dev/zero",
    "/dev/null",
    "/dev/urandom",
    "/dev/full",
    "dangling",
    "loop",
    "sibling",
)
LOCK_STAMPS = {
    "i64-max": struct.pack("<q", I64_MAX),
    "i64-max-less-one": struct.pack("<q", I64_MAX - 1),
    "i64-min": struct.pack("<q", -(2**63)),
    "minus-one": struct.pack("<q", -1),
    "year-2200": struct.pack("<q", 7258118400 * 10**9),
    "short": b"\x01\x02\x03",
    "text": b"not a stamp at all, longer than eight bytes\n",
}
LOCK_PLANTS = (*LOCK_STAMPS, "symlink-secret", "symlink-dev-zero", "fifo", "folder")
JOURNAL_PLANTS = (
    "garbage",
    "frame-deep",
    "frame-max-stamp",
    "frame-min-stamp",
    "frame-escapes",
    "frame-other-run",
    "frame-huge-length",
    "fifo",
    "dev-zero",
    "folder",
    "bad-name",
    "journals-symlink-outside",
    "journals-fifo",
)
MERGED_PLANTS = ("other-run", "garbage", "dev-zero", "fifo", "sparse-4g", "secret")
MANIFEST_PLANTS = (
    "setuid",
    "setgid",
    "sticky",
    "all-bits",
    "other-run",
    "deep",
    "nan",
    "huge-size",
    "escape-path",
    "long-path",
    "sparse-4g",
)
HASH_CACHE_PLANTS = ("symlink-secret", "symlink-dev-zero", "fifo", "garbage", "folder")
DOCUMENT_EDITS = ("escapes", "swap", "nan", "infinity", "deep-1000", "deep-100000", "padded-40m")


@dataclass(frozen=True)
class Mutation:
    """One change someone else makes: ``kind`` what, ``target`` where (relative to the folder it
    changes; a name with bytes that are not UTF-8 is kept as os.fsdecode gives it), ``detail``
    how."""

    kind: str
    target: str
    detail: str = ""

    def __repr__(self) -> str:
        return f"{self.kind}({self.target!r}, {self.detail!r})"


@dataclass(frozen=True)
class TreeSpec:
    """What a tree is: its layouts, whether the CLI reads it as a project's .run_log_store (no
    configuration file), which folder is changed and how."""

    store_layout: str
    catalog_layout: str
    project: bool
    mutated: str  # "logs" or "catalog"
    mutations: tuple[Mutation, ...]
    deep_parameter: int = 0  # nesting of the parameter a write stores; 0: a plain one

    def __repr__(self) -> str:
        where = "project .run_log_store" if self.project else "configured"
        return (
            f"TreeSpec(store={self.store_layout}, catalog={self.catalog_layout}, {where}, "
            f"deep_parameter={self.deep_parameter}, {self.mutated} mutated by "
            f"[{', '.join(map(repr, self.mutations))}])"
        )


@dataclass
class Tree:
    """A built tree: where everything is."""

    spec: TreeSpec
    base: Path
    logs: Path
    catalog: Path
    work: Path  # the commands' working folder
    data: Path  # the catalog's compute data folder
    outside: Path  # the sentinels
    target_logs: Path
    target_catalog: Path
    config: Path | None  # None: the CLI reads work/.run_log_store with no configuration
    catalog_config: Path
    target_config: Path
    applied: list[str] = field(default_factory=list)

    def given(self) -> list[Path]:
        """The folders calls are given: whatever is written must be in one of them."""
        return [self.logs, self.catalog, self.work, self.target_logs, self.target_catalog]


# --- templates: runs written by the real stores -----------------------------------------------

_TEMPLATES: dict[tuple[str, str], Path] = {}
_SCRATCH: list[Path] = []


def _scratch() -> Path:
    if not _SCRATCH:
        made = Path(tempfile.mkdtemp(prefix="runlog-fuzz-templates-"))
        atexit.register(shutil.rmtree, made, ignore_errors=True)
        _SCRATCH.append(made)
    return _SCRATCH[0]


def template(store_layout: str, catalog_layout: str) -> Path:
    """A folder with ``logs/`` (three runs: run-a SUCCESS, run-b FAIL, run-live still
    PROCESSING, each with a map of two branches, parameters, metrics and catalog entries),
    ``catalog/`` (the files the runs put) and ``data/`` (the compute folder), built once."""
    key = (store_layout, catalog_layout)
    if key not in _TEMPLATES:
        root = _scratch() / f"{store_layout}+{catalog_layout}"
        root.mkdir()
        data = root / "data"
        data.mkdir()
        for name, content in COMPUTE_FILES.items():
            (data / name).write_bytes(content)
        store = create_store(store_layout, log_folder=str(root / "logs"), fsync=False)
        catalog = create_catalog(
            catalog_layout,
            catalog_location=str(root / "catalog"),
            compute_data_folder=str(data),
        )
        for index, run_id in enumerate(RUNS):
            _write_run(store, catalog, run_id, index)
        for run_id in ENDED_RUNS:  # a full read stores .merged.json beside an ended chunked run
            store.get_run_log_by_id(run_id, full=True)
        then = time.time() - AGE.total_seconds()
        for path in [root, *root.rglob("*")]:
            os.utime(path, (then, then), follow_symlinks=False)
        _TEMPLATES[key] = root
    return _TEMPLATES[key]


def _write_run(store: BaseRunLogStore, catalog: BaseCatalog, run_id: str, index: int) -> None:
    status = ("SUCCESS", "FAIL", "PROCESSING")[index]
    start = datetime.now() - AGE
    rate = 0.1 * (index + 1)
    store.create_run_log(run_id, dag_hash=f"{index}" * 40, tag="nightly", status="PROCESSING")
    store.set_run_config(run_id, {"dag": {"start_at": "prepare", "nodes": {"prepare": {}}}})
    store.set_parameters(run_id, {"learning_rate": JsonParameter(kind="json", value=rate)})

    def attempt(offset: int, ok: bool) -> StepAttempt:
        return StepAttempt(
            attempt_number=1,
            start_time=str(start + timedelta(seconds=offset)),
            end_time=str(start + timedelta(seconds=offset + 1)),
            status="SUCCESS" if ok else "FAIL",
            message="" if ok else "ValueError: loss is NaN",
        )

    prepare = store.create_step_log("prepare", "prepare")
    prepare.attempts.append(attempt(0, True))
    prepare.status = "SUCCESS"
    prepare.data_catalog.extend(catalog.put("*", run_id=run_id))
    store.add_step_log(prepare, run_id)
    train = store.create_step_log("train", "train")
    train.step_type = "map"
    train.status = "PROCESSING"
    store.add_step_log(train, run_id)
    for branch_index in range(2):
        name = f"train.{branch_index}"
        ended = status != "PROCESSING" or branch_index == 0
        ok = not (status == "FAIL" and branch_index == 1)
        branch = store.create_branch_log(name)
        store.add_branch_log(branch, run_id)
        store.set_parameters(
            run_id,
            {"item": JsonParameter(kind="json", value=branch_index)},
            internal_branch_name=name,
        )
        fit = store.create_step_log("fit", f"{name}.fit")
        fit.attempts.append(attempt(1 + branch_index, ok))
        fit.attempts[-1].user_defined_metrics["accuracy"] = MetricParameter(
            kind="metric", value=0.5 + 0.1 * index
        )
        fit.status = ("SUCCESS" if ok else "FAIL") if ended else "PROCESSING"
        store.add_step_log(fit, run_id)
        if ended:
            branch.status = fit.status
            store.add_branch_log(branch, run_id)
    if status != "PROCESSING":
        train.status = status
        store.add_step_log(train, run_id)
        store.set_parameters(run_id, {"accuracy": MetricParameter(kind="metric", value=0.7)})
        store.update_run_log_status(run_id, status)


def object_folder(name: str) -> str:
    """The folder of content-fs where the compute file ``name`` of the template is stored."""
    return "objects/" + blake3.blake3(COMPUTE_FILES[name]).hexdigest()[:2]


def listing(folder: Path) -> list[str]:
    """Every entry under ``folder`` (files and folders, hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- drawing trees ----------------------------------------------------------------------------


@st.composite
def tree_specs(draw: st.DrawFn, mutated: str) -> TreeSpec:
    """A tree whose ``mutated`` folder ("logs" or "catalog") someone else changed 1-4 times."""
    store_layout = draw(st.sampled_from(STORE_LAYOUTS))
    catalog_layout = draw(st.sampled_from(CATALOG_LAYOUTS))
    project = mutated == "logs" and catalog_layout == "file-system" and draw(st.booleans())
    root = template(store_layout, catalog_layout)
    entries = listing(root / ("logs" if mutated == "logs" else "catalog"))
    if mutated == "logs":
        kinds = ["symlink", "fifo", "socket", "bad-name", "oversize", "document", "lock"]
        if store_layout == "chunked-fs":
            kinds += ["journal", "merged"]
    else:
        kinds = ["symlink", "fifo", "socket", "bad-name", "setuid", "hash-cache", "compute-name"]
        if catalog_layout == "content-fs":
            kinds += ["manifest"]
    mutations = draw(
        st.lists(
            _mutations(entries, kinds, mutated),
            min_size=1,
            max_size=4,
            unique_by=lambda m: (m.kind, m.target),
        )
    )
    # Parameters as deep as runnable's models take (255 levels), and shallower.
    deep = draw(st.sampled_from([0, 0, 0, 100, 200, 255])) if mutated == "logs" else 0
    return TreeSpec(store_layout, catalog_layout, project, mutated, tuple(mutations), deep)


def _mutations(entries: list[str], kinds: list[str], mutated: str) -> st.SearchStrategy[Mutation]:
    documents = [e for e in entries if e.endswith(".json") or e == "RunLog"]
    folders = [".", *sorted({str(Path(e).parent) for e in entries if "/" in e})]
    runs = list(RUNS)

    def named(kind: str, targets: list[str], details: list[str]) -> st.SearchStrategy[Mutation]:
        return st.builds(
            Mutation, st.just(kind), st.sampled_from(targets), st.sampled_from(details)
        )

    names = [os.fsdecode(name) for name in BAD_NAMES]
    choices = {
        "symlink": named("symlink", entries, list(SYMLINK_DESTINATIONS)),
        "fifo": named("fifo", entries, [""]),
        "socket": named("socket", entries, [""]),
        "bad-name": st.builds(
            Mutation,
            st.just("bad-name"),
            st.sampled_from(folders),
            st.tuples(
                st.sampled_from(["", "BranchLog-", "StepLog-"] if mutated == "logs" else [""]),
                st.sampled_from(names),
                st.sampled_from(["copy", "empty-file", "empty-folder", "link-to-sibling"]),
            ).map(lambda t: f"{t[0]}{t[1]}|{t[2]}"),
        ),
        "oversize": named("oversize", documents or entries, ["sparse-4g", "padded-40m"]),
        "document": named("document", documents or entries, list(DOCUMENT_EDITS)),
        "lock": named("lock", runs, list(LOCK_PLANTS)),
        "journal": named("journal", runs, list(JOURNAL_PLANTS)),
        "merged": named("merged", runs, list(MERGED_PLANTS)),
        "setuid": named(
            "setuid", [e for e in entries if "/" in e] or entries, ["4755", "2755", "1777", "6777"]
        ),
        "hash-cache": named("hash-cache", [".runlog-hash-cache"], list(HASH_CACHE_PLANTS)),
        "compute-name": named(
            "compute-name", [os.fsdecode(n) for n in COMPUTE_NAMES], ["file", "folder"]
        ),
        "manifest": named("manifest", list(ENDED_RUNS), list(MANIFEST_PLANTS)),
    }
    return st.one_of([choices[kind] for kind in kinds])


# --- building a tree --------------------------------------------------------------------------


def build(spec: TreeSpec, base: Path) -> Tree:
    """The tree ``spec`` describes, under ``base``: the template copied in, the sentinels made,
    the configuration files written, then every mutation applied."""
    root = template(spec.store_layout, spec.catalog_layout)
    work = base / "work"
    work.mkdir(parents=True)
    if spec.project:
        logs, catalog = work / ".run_log_store", work / ".catalog"
    else:
        logs, catalog = base / "logs", base / "catalog"
    shutil.copytree(root / "logs", logs, symlinks=True)
    shutil.copytree(root / "catalog", catalog, symlinks=True)
    shutil.copytree(root / "data", work / "data", symlinks=True)
    tree = Tree(
        spec=spec,
        base=base,
        logs=logs,
        catalog=catalog,
        work=work,
        data=work / "data",
        outside=base / "outside",
        target_logs=base / "target-logs",
        target_catalog=base / "target-catalog",
        config=None if spec.project else base / "config.yaml",
        catalog_config=base / "config.yaml",
        target_config=base / "target.yaml",
    )
    tree.target_logs.mkdir()
    tree.target_catalog.mkdir()
    _make_sentinels(tree)
    _write_config(
        tree.catalog_config,
        (spec.store_layout, logs),
        (spec.catalog_layout, catalog),
        tree.data,
    )
    other_store = "chunked-fs" if spec.store_layout == "file-system" else "file-system"
    other_catalog = "content-fs" if spec.catalog_layout == "file-system" else "file-system"
    _write_config(
        tree.target_config,
        (other_store, tree.target_logs),
        (other_catalog, tree.target_catalog),
        tree.data,
    )
    folder = logs if spec.mutated == "logs" else catalog
    for mutation in spec.mutations:
        tree.applied.append(apply(tree, folder, mutation))
    return tree


def _write_config(
    path: Path, store: tuple[str, Path], catalog: tuple[str, Path], data: Path
) -> None:
    document = {
        "run-log-store": {
            "type": store[0],
            "config": {"log_folder": str(store[1]), "fsync": False, "lock_timeout": 2},
        },
        "catalog": {
            "type": catalog[0],
            "config": {"catalog_location": str(catalog[1]), "compute_data_folder": str(data)},
        },
    }
    path.write_text(yaml.safe_dump(document))


def _make_sentinels(tree: Tree) -> None:
    outside = tree.outside
    (outside / "dir" / "sub").mkdir(parents=True)
    (outside / "secret.txt").write_text(f"{TOKEN}\n")
    (outside / "dir" / "keep.txt").write_text(f"{TOKEN} in a folder\n")
    (outside / "dir" / OBJECT_NAME).write_text(f"{TOKEN} named as a stored content\n")
    (outside / "dir" / "BranchLog-x.json").write_text(json.dumps({"token": TOKEN}))
    (outside / "dir" / "sub" / "deeper.txt").write_text(TOKEN)
    foreign = {
        "run_id": "run-a",
        "dag_hash": "",
        "tag": TOKEN,
        "status": "SUCCESS",
        "steps": {},
        "parameters": {"secret": {"kind": "json", "value": TOKEN}},
        "run_config": {},
    }
    (outside / "foreign-run.json").write_text(json.dumps(foreign))


def snapshot_outside(tree: Tree) -> dict[str, tuple[object, ...]]:
    """Every sentinel as it is (kind, mode, size, mtime, content hash), and the top of the base
    folder (nothing may appear beside the trees)."""
    found: dict[str, tuple[object, ...]] = {}
    for name in os.listdir(tree.base):
        found[f"base/{name}"] = ()
    for path in [tree.outside, *sorted(tree.outside.rglob("*"))]:
        info = path.lstat()
        digest = ""
        if stat.S_ISREG(info.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found[str(path.relative_to(tree.base))] = (
            stat.S_IFMT(info.st_mode),
            stat.S_IMODE(info.st_mode),
            info.st_size,
            info.st_mtime_ns,
            digest,
        )
    return found


# --- mutations --------------------------------------------------------------------------------


def apply(tree: Tree, folder: Path, mutation: Mutation) -> str:
    """Make ``mutation`` in ``folder``; what was done, in words (a target that a previous
    mutation removed is skipped, and said to be)."""
    kind, target, detail = mutation.kind, mutation.target, mutation.detail
    path = folder / target
    if _through_a_link(folder, path):  # a change there would land outside the folder
        return f"{mutation!r}: skipped, {target} is reached through a link"
    replaces = kind in ("symlink", "fifo", "socket", "oversize", "document", "setuid")
    if replaces and not os.path.lexists(path):
        return f"{mutation!r}: skipped, {target} is gone"
    if kind == "symlink":
        _replace_with_symlink(tree, path, detail)
    elif kind == "fifo":
        _remove(path)
        os.mkfifo(path)
    elif kind == "socket":
        _remove(path)
        _make_socket(path)
    elif kind == "bad-name":
        _plant_bad_name(tree, folder, path, detail)
    elif kind == "oversize":
        _oversize(path, detail)
    elif kind == "document":
        _edit_document(tree, folder, path, detail)
    elif kind == "lock":
        _plant_lock(tree, folder, target, detail)
    elif kind == "journal":
        _plant_journal(tree, folder / target, detail)
    elif kind == "merged":
        _plant_merged(tree, folder, target, detail)
    elif kind == "setuid":
        if path.is_symlink():
            return f"{mutation!r}: skipped, {target} is a symlink"
        os.chmod(path, int(detail, 8))
    elif kind == "hash-cache":
        _plant_special(tree, folder / ".runlog-hash-cache", detail)
    elif kind == "compute-name":
        name = tree.data / target
        if detail == "folder":
            name.mkdir()
            (name / "inside.txt").write_bytes(b"in a folder of a bad name\n")
        else:
            name.write_bytes(b"x" * 100)
    elif kind == "manifest":
        _plant_manifest(tree, folder, target, detail)
    else:
        raise ValueError(f"unknown mutation {kind}")
    return repr(mutation)


def _copy(source: str | Path, target: str | Path) -> None:
    """A copy of what a previous mutation may have made a FIFO or a sparse file of gigabytes:
    those are copied as an empty file (the copy would hang, or write gigabytes of zeros)."""
    info = os.lstat(source)
    if stat.S_ISREG(info.st_mode) and info.st_size <= (1 << 20):
        shutil.copyfile(source, target)
    else:
        Path(target).write_bytes(b"")


def _through_a_link(folder: Path, path: Path) -> bool:
    """Whether a folder between ``folder`` and ``path`` is a link (or no folder at all)."""
    for parent in path.parents:
        if parent == folder or folder not in parent.parents:
            return False
        if parent.is_symlink() or (os.path.lexists(parent) and not parent.is_dir()):
            return True
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _destination(tree: Tree, path: Path, destination: str) -> str:
    if destination.startswith("outside/"):
        return str(tree.base / destination)
    if destination == "dangling":
        return str(tree.outside / "nothing-here")
    if destination == "loop":
        return path.name
    if destination == "sibling":
        # the same entry of another run, when there is one: run-a's document pointing at run-b's
        text = str(path)
        for run_id, other in (("run-a", "run-b"), ("run-b", "run-a"), ("run-live", "run-a")):
            if run_id in text:
                return text.replace(run_id, other)
        return str(path.parent)
    return destination


def _replace_with_symlink(tree: Tree, path: Path, destination: str) -> None:
    _remove(path)
    os.symlink(_destination(tree, path, destination), path)


def _make_socket(path: Path) -> None:
    # A unix socket's path is limited to 108 bytes: bind it by its name from its folder.
    here = os.getcwd()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.chdir(path.parent)
        sock.bind(path.name)
    finally:
        os.chdir(here)
        sock.close()


def _plant_special(tree: Tree, path: Path, how: str) -> None:
    _remove(path)
    if how == "symlink-secret":
        os.symlink(tree.outside / "secret.txt", path)
    elif how == "symlink-dev-zero":
        os.symlink("/dev/zero", path)
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "folder":
        path.mkdir()
        (path / "inside").write_bytes(b"x")
    elif how == "garbage":
        path.write_bytes(b"\x00\xffgarbage" * 100)
    else:
        raise ValueError(how)


def _plant_bad_name(tree: Tree, folder: Path, where: Path, detail: str) -> None:
    name_text, what = detail.rsplit("|", 1)
    name = os.fsencode(name_text)
    if not where.is_dir() or where.is_symlink():
        return
    suffix = b".json" if (where == folder and tree.spec.store_layout == "file-system") else b""
    if where.name == ".journals":
        suffix = b".journal"
    if name_text.startswith(("BranchLog-", "StepLog-")):
        suffix = b".json"
    name = (name + suffix)[-255:] if len(name + suffix) > 255 else name + suffix
    path = where / os.fsdecode(name)
    _remove(path)
    source = _a_sibling(tree, folder, where)
    if what == "copy" and source is not None:
        if source.is_dir():
            shutil.copytree(source, path, symlinks=True, copy_function=_copy)
        else:
            _copy(source, path)
    elif what == "empty-folder":
        path.mkdir()
    elif what == "link-to-sibling" and source is not None:
        os.symlink(source.name, path)
    else:
        path.write_bytes(b"")


def _a_sibling(tree: Tree, folder: Path, where: Path) -> Path | None:
    """Something real to copy or link beside ``where``: a run (or run document) at the top of
    the log folder, else any file in ``where``."""
    if where == folder and tree.spec.mutated == "logs":
        for candidate in (folder / "run-a", folder / "run-a.json"):
            if candidate.exists() and not candidate.is_symlink():
                return candidate
    for candidate in sorted(where.iterdir()):
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None


def _oversize(path: Path, how: str) -> None:
    if path.is_dir() and not path.is_symlink():
        return
    if how == "sparse-4g":
        _remove(path)
        with open(path, "wb") as out:
            out.truncate(4 << 30)  # 4 GiB that take no room: only a reader can make them real
        return
    data = b""
    with contextlib.suppress(OSError):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode) and info.st_size <= (1 << 20):
            data = path.read_bytes()
    _remove(path)
    path.write_bytes(b" " * (40 << 20) + data)  # still the same JSON, 40 MiB longer


def _read_json(path: Path) -> Any:
    if path.is_symlink() or not path.is_file() or path.stat().st_size > (1 << 20):
        return None
    try:
        return json.loads(path.read_bytes())
    except ValueError:
        return None


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _edit_document(tree: Tree, folder: Path, path: Path, how: str) -> None:
    if how == "padded-40m":
        _oversize(path, how)
        return
    if how == "swap":
        other = _swapped(path)
        if other is not None and other.is_file() and not other.is_symlink():
            _remove(path)
            _copy(other, path)
        return
    document = _read_json(path)
    if not isinstance(document, dict):
        return
    placeholder = "__PLACEHOLDER__"
    replacement = ""
    if how == "escapes":
        _escape_strings(document)
        params = document.setdefault("parameters", {})
        if isinstance(params, dict):
            params[f"p{ESCAPES}"] = {"kind": "json", "value": ESCAPES}
        document["tag"] = f"tag{ESCAPES}"
    elif how in ("nan", "infinity"):
        params = document.setdefault("parameters", {})
        if isinstance(params, dict):
            params["loss"] = {"kind": "metric", "value": placeholder}
            replacement = "NaN" if how == "nan" else "-Infinity"
    elif how.startswith("deep-"):
        params = document.setdefault("parameters", {})
        if isinstance(params, dict):
            params["deep"] = {"kind": "json", "value": placeholder}
            replacement = _nested(int(how.removeprefix("deep-")))
    text = json.dumps(document)
    if replacement:
        text = text.replace(json.dumps(placeholder), replacement)
    _remove(path)
    path.write_text(text)


def _escape_strings(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and key in ("tag", "message", "name", "dag_hash"):
                node[key] = f"{value}{ESCAPES}"
            else:
                _escape_strings(value)
    elif isinstance(node, list):
        for value in node:
            _escape_strings(value)


def _swapped(path: Path) -> Path | None:
    text = str(path)
    for run_id, other in (("run-a", "run-b"), ("run-b", "run-a"), ("run-live", "run-b")):
        if run_id in text:
            return Path(text.replace(run_id, other))
    return None


def _lock_path(tree: Tree, folder: Path, run_id: str) -> Path:
    if tree.spec.store_layout == "chunked-fs":
        return folder / run_id / ".lock"
    return folder / f".{run_id}.lock"


def _plant_lock(tree: Tree, folder: Path, run_id: str, how: str) -> None:
    path = _lock_path(tree, folder, run_id)
    if not path.parent.is_dir() or path.parent.is_symlink():
        return
    if how in LOCK_STAMPS:
        _remove(path)
        path.write_bytes(LOCK_STAMPS[how])
    else:
        _plant_special(tree, path, how)


def frame(stamp: int, kind: int, target: str, body: bytes) -> bytes:
    """One journal frame as the Rust core writes it (magic, length, check, payload)."""
    encoded = target.encode()
    payload = struct.pack("<qBI", stamp, kind, len(encoded)) + encoded + body
    length = struct.pack("<I", len(payload))
    check = blake3.blake3(length + payload).digest()[:8]
    return b"\xffRJ\x01" + length + check + payload


def _plant_journal(tree: Tree, run: Path, how: str) -> None:
    if not run.is_dir() or run.is_symlink():
        return
    journals = run / ".journals"
    if how in ("journals-symlink-outside", "journals-fifo"):
        _remove(journals)
        if how == "journals-fifo":
            os.mkfifo(journals)
        else:
            os.symlink(tree.outside / "dir", journals)
        return
    if journals.is_symlink() or (journals.exists() and not journals.is_dir()):
        return
    journals.mkdir(exist_ok=True)
    path = journals / f"{os.getpid()}-{time.time_ns()}-00000000deadbeef.journal"
    now = time.time_ns()
    if how == "garbage":
        path.write_bytes(b"\xffRJ\x01" + os.urandom(200))
    elif how == "frame-deep":
        body = b'{"deep": {"kind": "json", "value": ' + _nested(100_000).encode() + b"}}"
        path.write_bytes(frame(now, 2, "", b'{"parameters": ' + body + b"}"))
    elif how == "frame-max-stamp":
        path.write_bytes(frame(I64_MAX, 1, "", b'{"status": "SUCCESS", "tag": "max-stamp"}'))
    elif how == "frame-min-stamp":
        path.write_bytes(frame(-(2**63), 1, "", b'{"status": "FAIL"}'))
    elif how == "frame-escapes":
        body = json.dumps({"tag": ESCAPES, "dag_hash": ESCAPES}).encode()
        path.write_bytes(frame(now, 1, "", body))
    elif how == "frame-other-run":  # a record setting the run's fields to another run's id
        other = "run-b" if run.name != "run-b" else "run-a"
        path.write_bytes(frame(now, 1, "", json.dumps({"run_id": other}).encode()))
    elif how == "frame-huge-length":
        path.write_bytes(b"\xffRJ\x01" + struct.pack("<I", 0xFFFFFFF0) + b"\0" * 8 + b"{}")
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "dev-zero":
        os.symlink("/dev/zero", path)
    elif how == "folder":
        path.mkdir()
    elif how == "bad-name":
        (journals / os.fsdecode(b"\x1b]0;owned\x07\xff.journal")).write_bytes(b"")
    else:
        raise ValueError(how)


def _plant_merged(tree: Tree, folder: Path, run_id: str, how: str) -> None:
    run = folder / run_id
    if not run.is_dir() or run.is_symlink():
        return
    path = run / ".merged.json"
    other = folder / ("run-b" if run_id != "run-b" else "run-a") / ".merged.json"
    if how == "other-run":
        if other.is_file() and not other.is_symlink():
            _remove(path)
            _copy(other, path)
    elif how == "garbage":
        _plant_special(tree, path, "garbage")
    elif how == "dev-zero":
        _plant_special(tree, path, "symlink-dev-zero")
    elif how == "fifo":
        _plant_special(tree, path, "fifo")
    elif how == "secret":
        _plant_special(tree, path, "symlink-secret")
    elif how == "sparse-4g":
        _oversize(path, "sparse-4g")
    else:
        raise ValueError(how)


def _plant_manifest(tree: Tree, folder: Path, run_id: str, how: str) -> None:
    path = folder / "manifests" / f"{run_id}.json"
    if how == "sparse-4g":
        if path.is_file() and not path.is_symlink():
            _oversize(path, how)
        return
    document = _read_json(path)
    if not isinstance(document, dict) or not isinstance(document.get("files"), dict):
        return
    files: dict[str, Any] = document["files"]
    replacement = ""
    modes = {"setuid": 0o104755, "setgid": 0o102755, "sticky": 0o101755, "all-bits": 0o107777}
    if how in modes:
        for entry in files.values():
            entry["mode"] = modes[how]
    elif how == "other-run":
        other = folder / "manifests" / f"{'run-b' if run_id != 'run-b' else 'run-a'}.json"
        if other.is_file() and not other.is_symlink():
            _remove(path)
            _copy(other, path)
        return
    elif how == "deep":
        document["extra"] = "__PLACEHOLDER__"
        replacement = _nested(100_000)
    elif how == "nan":
        for entry in files.values():
            entry["size"] = "__PLACEHOLDER__"
        replacement = "NaN"
    elif how == "huge-size":
        for entry in files.values():
            entry["size"] = 2**62
    elif how == "escape-path":
        for name in list(files):
            files[f"{ESCAPES}{name}"] = files.pop(name)
    elif how == "long-path":
        for name in list(files):
            files["d" * 240 + name] = files.pop(name)
    else:
        raise ValueError(how)
    text = json.dumps(document)
    if replacement:
        text = text.replace('"__PLACEHOLDER__"', replacement)
    _remove(path)
    path.write_text(text)


def remove_tree(base: Path) -> None:
    """Remove a built tree whatever it holds (read-only contents, FIFOs, sockets)."""

    for folder, _, _ in os.walk(base):  # a folder a mutation left unwritable
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o755)
    shutil.rmtree(base, ignore_errors=True)
