"""A search always equals a scan: the run index is never the truth, only a faster way to it.

Random sequences of changes to a store's runs, each followed by searches whose every answer is
compared with the brute-force answer the design defines (for every run id the store lists,
``read_summary`` + ``query.matches`` + ``query.sort_runs``), page by page, and, for a few
simple filters, with a judge evaluated straight over the full run logs
(``get_run_log_by_id(full=True)``), which shares no code with the summaries or the query module.

The changes, on file-system, chunked-fs, minio and chunked-minio (the last two against the real
MinIO server of tests/conftest.py):

- runs created, changed (parameters, metrics, steps, status), ended and deleted by our stores,
  and on the file-system layouts by runnable 0.50's own stores, each in a worker process of
  its own (tests/search/_property_worker.py);
- by hand: a run copied under a new id (``cp -r``) with its run_id rewritten or, as a person
  may forget to, not; a run removed (``rm -r``) or one file of a chunked run; a run file
  rewritten in place with the same size (with and without its mtime put back, and rewritten,
  searched and rewritten again at once: git's racy-clean case); a run file truncated to garbage;
- writers SIGKILLed in the middle of a run; searching processes SIGKILLed at a random moment of
  a search and once they have begun building the index (their progress callback says when);
  searches from other processes while writers write and, meanwhile, runs are removed or copied
  by hand and the index deleted or truncated;
- the index file deleted, truncated, damaged (garbage over its header, over its schema's text,
  or anywhere in its pages), or locked by another process (an exclusive SQLite transaction)
  shorter and longer than the index waits for it.

Searches are made by four kinds of caller, at random: the test's own store object kept across
the whole sequence (``search_runs`` page by page, or ``iter_runs``), a fresh store object, and
a searching process of its own.

The sequence is drawn from a seeded generator and derandomized: CI runs the same sequences
every time. ``RUNLOG_SEARCH_PROPERTY_STEPS`` sets the steps per sequence (default 20),
``RUNLOG_SEARCH_PROPERTY_SEQUENCES`` the sequences per store (default 1), and
``RUNLOG_SEARCH_PROPERTY_SEED`` the first seed (default fixed; ``random`` draws one): a long
soak is, for instance, ``RUNLOG_SEARCH_PROPERTY_SEQUENCES=50 RUNLOG_SEARCH_PROPERTY_SEED=random``.
A failure names its seed, the store, the step, the last actions, the filter and order, and the
first summaries that differ; the same seed replays it.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from minio import Minio

from runlog_store import BaseRunLogStore, create_store
from runlog_store.exceptions import RunLogNotFoundError
from runlog_store.ops.runs import RunSummary, read_summary
from runlog_store.search import query

from ..minio_server import MinioServer
from . import _property_worker
from ._property_model import (
    RunPlanner,
    canonical,
    independent_filters,
    random_filter,
    random_order,
)

STEPS = int(os.environ.get("RUNLOG_SEARCH_PROPERTY_STEPS", "20"))
# Each store type's seeds are the first seed plus its place here (``_run_sequences``).
STORE_TYPES = ["file-system", "chunked-fs", "minio", "chunked-minio"]
SEQUENCES = int(os.environ.get("RUNLOG_SEARCH_PROPERTY_SEQUENCES", "1"))
_SEED = os.environ.get("RUNLOG_SEARCH_PROPERTY_SEED", "20261204")
FIRST_SEED = int.from_bytes(os.urandom(4), "big") if _SEED == "random" else int(_SEED)
QUERIES_PER_STEP = 3
INITIAL_RUNS = 8
WORKER_TIMEOUT = 120.0
INDEX_NAME = ".runlog-index/runs.sqlite"
INDEX_SIDE_FILES = ("-wal", "-shm", "-journal")
# How an index is damaged (do_index_corrupted).
CORRUPTIONS = ("schema", "page", "header")
# How long this process's searches wait for a locked index while another process holds it
# longer than that.
SHORT_WAIT = 0.3

# Every action each sequence takes at least once (in an order drawn from its seed); the rest of
# its steps are drawn with these weights.
ACTIONS: dict[str, int] = {
    "create": 6,
    "change": 6,
    "end": 3,
    "delete": 1,
    "copy_by_hand": 2,
    "remove_by_hand": 1,
    "rewrite_same_size": 2,
    "rewrite_same_size_same_mtime": 1,
    "rewrite_right_after_search": 2,
    "truncate_to_garbage": 1,
    "kill_writer": 1,
    "kill_searcher": 2,
    "search_while_writing": 2,
    "index_deleted": 1,
    "index_corrupted": 1,
    "index_truncated": 1,
    "index_locked": 1,
}


# --- worker processes ---------------------------------------------------------------------------


class WorkerError(AssertionError):
    pass


class Worker:
    """A process of its own (spawn) serving one request at a time; killed and started again."""

    def __init__(self, name: str, spec: dict[str, Any], env: dict[str, str]) -> None:
        self.name, self.spec, self.env = name, spec, env
        self.process: Any = None
        self.conn: Connection | None = None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self.process = context.Process(
            target=_property_worker.serve, args=(child, self.spec, self.env), daemon=True
        )
        self.process.start()
        child.close()
        self.conn = parent
        self._receive("starting")

    def _receive(self, doing: str) -> Any:
        assert self.conn is not None
        if not self.conn.poll(WORKER_TIMEOUT):
            raise WorkerError(
                f"worker {self.name} did not answer in {WORKER_TIMEOUT:.0f} s ({doing})"
            )
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise WorkerError(f"worker {self.name} died ({doing})") from None
        if status == "error":
            raise WorkerError(f"worker {self.name} failed ({doing}):\n{value}")
        return value

    def begin(self, request: dict[str, Any]) -> None:
        """Send a request and wait until the worker has started on it."""
        if self.process is None or not self.process.is_alive():
            self.start()
        assert self.conn is not None
        self.conn.send(request)
        self._receive(f"starting {request['op']}")

    def finish(self, doing: str = "") -> Any:
        return self._receive(doing)

    def call(self, request: dict[str, Any]) -> Any:
        self.begin(request)
        return self.finish(request["op"])

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.join(10)
        if self.conn is not None:
            self.conn.close()
        self.process, self.conn = None, None

    def stop(self) -> None:
        if self.process is not None and self.process.is_alive() and self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.send({"op": "stop"})
                self.process.join(5)
        self.kill()


# --- the runs as a person sees them: files and objects to copy, remove and rewrite by hand ------


class Documents:
    """The stored documents of a store's runs, for changes by hand."""

    def run_documents(self, run_id: str) -> list[str]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def write(self, name: str, data: bytes, keep_mtime: bool = False) -> None:
        raise NotImplementedError

    def rename(self, name: str, source: str, target: str) -> str:
        raise NotImplementedError

    def remove_run(self, run_id: str) -> None:
        raise NotImplementedError

    def copy_run(self, source: str, target: str, rewrite: bool = True) -> None:
        """``cp -r`` of a run under a new id, its run_id rewritten where a document holds it
        (or, as a person may forget to, left naming the source run)."""
        for name in self.run_documents(source):
            data = self.read(name)
            self.write(
                self.rename(name, source, target),
                _with_run_id(data, source, target) if rewrite else data,
            )

    def remove_document(self, name: str) -> None:
        raise NotImplementedError


def _with_run_id(data: bytes, source: str, target: str) -> bytes:
    try:
        document = json.loads(data)
    except ValueError:
        return data
    if isinstance(document, dict) and document.get("run_id") == source:
        document["run_id"] = target
        return json.dumps(document).encode()
    return data


class FolderDocuments(Documents):
    def __init__(self, folder: Path, chunked: bool) -> None:
        self.folder, self.chunked = folder, chunked

    def run_documents(self, run_id: str) -> list[str]:
        if not self.chunked:
            path = self.folder / f"{run_id}.json"
            return [str(path)] if path.is_file() else []
        return sorted(str(p) for p in (self.folder / run_id).rglob("*") if p.is_file())

    def read(self, name: str) -> bytes:
        return Path(name).read_bytes()

    def write(self, name: str, data: bytes, keep_mtime: bool = False) -> None:
        path = Path(name)
        if keep_mtime:
            before = path.stat()
            with path.open("r+b") as file:  # in place: same inode, same size
                file.write(data)
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size == len(data):
            with path.open("r+b") as file:
                file.write(data)
        else:
            path.write_bytes(data)

    def rename(self, name: str, source: str, target: str) -> str:
        relative = Path(name).relative_to(self.folder)
        if not self.chunked:
            return str(self.folder / f"{target}.json")
        return str(self.folder / target / Path(*relative.parts[1:]))

    def remove_document(self, name: str) -> None:
        Path(name).unlink(missing_ok=True)

    def remove_run(self, run_id: str) -> None:
        if self.chunked:
            shutil.rmtree(self.folder / run_id, ignore_errors=True)
        else:
            (self.folder / f"{run_id}.json").unlink(missing_ok=True)


class ObjectDocuments(Documents):
    def __init__(self, client: Minio, bucket: str, prefix: str, chunked: bool) -> None:
        self.client, self.bucket, self.prefix, self.chunked = client, bucket, prefix, chunked

    def run_documents(self, run_id: str) -> list[str]:
        if not self.chunked:
            name = f"{self.prefix}/{run_id}.json"
            found = self.client.list_objects(self.bucket, prefix=name)
            return [o.object_name for o in found if o.object_name == name]
        found = self.client.list_objects(
            self.bucket, prefix=f"{self.prefix}/{run_id}/", recursive=True
        )
        return sorted(o.object_name for o in found)

    def read(self, name: str) -> bytes:
        response = self.client.get_object(self.bucket, name)
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def write(self, name: str, data: bytes, keep_mtime: bool = False) -> None:
        self.client.put_object(self.bucket, name, BytesIO(data), len(data))

    def rename(self, name: str, source: str, target: str) -> str:
        rest = name[len(self.prefix) + 1 :]
        if not self.chunked:
            return f"{self.prefix}/{target}.json"
        return f"{self.prefix}/{target}/{rest.split('/', 1)[1]}"

    def remove_document(self, name: str) -> None:
        self.client.remove_object(self.bucket, name)

    def remove_run(self, run_id: str) -> None:
        for name in self.run_documents(run_id):
            self.client.remove_object(self.bucket, name)


def _same_size_change(data: bytes, rng: random.Random) -> bytes | None:
    """The document with one status swapped for another of its length (SUCCESS for CREATED) or
    one digit for another: what a person editing a file in place might do; None if neither is
    in it."""
    spots = [("status", i) for i in _find_all(data, b'"SUCCESS"') + _find_all(data, b'"CREATED"')]
    spots += [("digit", i) for i, byte in enumerate(data) if 0x31 <= byte <= 0x39]
    if not spots:
        return None
    kind, at = rng.choice(spots)
    if kind == "status":
        word = b'"CREATED"' if data[at : at + 9] == b'"SUCCESS"' else b'"SUCCESS"'
        return data[:at] + word + data[at + 9 :]
    digit = rng.choice([d for d in b"123456789" if d != data[at]])
    return data[:at] + bytes([digit]) + data[at + 1 :]


def _find_all(data: bytes, word: bytes) -> list[int]:
    found, at = [], data.find(word)
    while at >= 0:
        found.append(at)
        at = data.find(word, at + 1)
    return found


# --- one sequence -------------------------------------------------------------------------------


@dataclass
class Run:
    writer: str  # the worker that writes it; "" once only hands may touch it
    steps: set[str] = field(default_factory=set)


@dataclass
class Setup:
    store_type: str
    spec: dict[str, Any]  # our store, as every reader opens it
    writers: dict[str, dict[str, Any]]  # worker name -> store spec
    documents: Documents
    index_folder: Path | None  # where the index of a store on a folder is
    cache: Path  # XDG_CACHE_HOME: where the index of a store in a bucket is


class Sequence:
    def __init__(self, seed: int, setup: Setup) -> None:
        self.seed, self.setup = seed, setup
        self.rng = random.Random(seed)
        self.planner = RunPlanner(self.rng)
        self.env = {"XDG_CACHE_HOME": str(setup.cache)}
        self.workers = {name: Worker(name, spec, self.env) for name, spec in setup.writers.items()}
        self.searchers = [Worker(f"searcher{i}", setup.spec, self.env) for i in (1, 2)]
        self.locker = Worker("locker", {"kind": "none"}, self.env)
        self.store = self.open_store()  # the test's own store object, kept the whole sequence
        self.runs: dict[str, Run] = {}
        self.counter = 0
        self.history: list[str] = []
        self.step = 0
        self.search_seconds = 0.05  # the longest search a process made: where kills aim
        self.write_seconds = 0.2  # the longest slow write: where kills of writers aim
        self.checks = 0
        self.seconds: dict[str, float] = {}
        self.corruptions = 0
        self.busy: set[str] = set()  # runs writers are writing while the test acts

    def open_store(self) -> BaseRunLogStore:
        return create_store(self.setup.spec["type"], **self.setup.spec["config"])

    def close(self) -> None:
        for worker in [*self.workers.values(), *self.searchers, self.locker]:
            worker.stop()

    # --- bookkeeping ----------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.history.append(f"step {self.step}: {text}")

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:03d}"

    def written_runs(self) -> list[str]:
        return sorted(r for r, run in self.runs.items() if run.writer)

    def any_run(self) -> str | None:
        """A run to change by hand (none a writer is writing at the moment)."""
        runs = sorted(set(self.runs) - self.busy)
        return self.rng.choice(runs) if runs else None

    def fail(self, text: str) -> None:
        # This sequence's seed comes back as the first sequence of its store type's test when
        # the first seed is this one less the type's offset (``_run_sequences``).
        store_type = self.setup.store_type
        first = self.seed - STORE_TYPES.index(store_type)
        test = "in_a_bucket" if "minio" in store_type else "on_a_folder"
        pytest.fail(
            f"{text}\n\nseed {self.seed} ({store_type}), step {self.step}; replay with "
            f"RUNLOG_SEARCH_PROPERTY_SEED={first} RUNLOG_SEARCH_PROPERTY_STEPS={STEPS} "
            f"RUNLOG_SEARCH_PROPERTY_SEQUENCES=1 .venv/bin/pytest -p no:randomly "
            f"'tests/search/test_search_property.py::test_search_equals_scan_{test}[{store_type}]'\n"
            "last actions:\n  " + "\n  ".join(self.history[-25:]),
            pytrace=False,
        )

    # --- the index file ---------------------------------------------------------------------

    def index_files(self) -> list[Path]:
        """The index's SQLite file(s) of this store: in its folder, or in the cache folder."""
        found = []
        if self.setup.index_folder is not None:
            found.append(self.setup.index_folder / INDEX_NAME)
        cache = self.setup.cache / "runlog-store" / "index"
        if cache.is_dir():
            found += sorted(p for p in cache.iterdir() if p.suffix == ".sqlite")
        return [p for p in found if p.is_file()]

    # --- the actions ------------------------------------------------------------------------

    def create(self, writer: str | None = None, slow: bool = False) -> str:
        writer = writer or self.rng.choice(sorted(self.workers))
        run_id = self.new_id("k" if slow else "r")
        plan = self.planner.slow_create(run_id) if slow else self.planner.create(run_id)
        self.runs[run_id] = Run(writer, {s["internal_name"] for s in plan["steps"]})
        self.note(f"{writer} creates {run_id}" + (" slowly" if slow else ""))
        if not slow:
            self.workers[writer].call(plan)
        return run_id

    def act(self, action: str) -> None:
        rng = self.rng
        getattr(self, f"do_{action}")(rng)

    def do_create(self, rng: random.Random) -> None:
        self.create()

    def do_change(self, rng: random.Random) -> None:
        runs = self.written_runs()
        if not runs:
            return self.do_create(rng)
        run_id = rng.choice(runs)
        run = self.runs[run_id]
        plan = self.planner.change(run_id, run.steps)
        if plan["op"] == "step":
            run.steps.add(plan["step"]["internal_name"])
        self.note(f"{run.writer} changes {run_id}: {json.dumps(plan)[:200]}")
        self.workers[run.writer].call(plan)

    def do_end(self, rng: random.Random) -> None:
        runs = self.written_runs()
        if not runs:
            return self.do_create(rng)
        run_id = rng.choice(runs)
        status = rng.choice(["SUCCESS", "FAIL"])
        self.note(f"{self.runs[run_id].writer} ends {run_id} {status}")
        self.workers[self.runs[run_id].writer].call(
            {"op": "status", "run_id": run_id, "status": status}
        )

    def do_delete(self, rng: random.Random) -> None:
        """Our store deletes a run it lists (one a hand took a file of may no longer be one)."""
        listed = set(self.open_store().list_run_ids())
        runs = sorted((set(self.runs) & listed) - self.busy)
        if not runs:
            return
        run_id = rng.choice(runs)
        self.note(f"ours deletes {run_id}")
        self.workers["ours"].call({"op": "delete", "run_id": run_id})
        del self.runs[run_id]

    def do_copy_by_hand(self, rng: random.Random) -> None:
        source = self.any_run()
        if source is None:
            return
        target = self.new_id("c")
        rewrite = rng.random() < 0.8
        self.note(
            f"cp -r {source} {target} (run_id {'rewritten' if rewrite else 'left as it was'})"
        )
        self.setup.documents.copy_run(source, target, rewrite)
        self.runs[target] = Run("")

    def do_remove_by_hand(self, rng: random.Random) -> None:
        """``rm -r`` of a run; in a chunked layout sometimes of one of its files only."""
        run_id = self.any_run()
        if run_id is None:
            return
        documents = self.setup.documents
        names = documents.run_documents(run_id)
        if len(names) > 1 and rng.random() < 0.3:
            name = rng.choice(names)
            self.note(f"rm {name} of {run_id}")
            documents.remove_document(name)
            self.runs[run_id].writer = ""
            return
        self.note(f"rm -r {run_id}")
        documents.remove_run(run_id)
        del self.runs[run_id]

    def rewrite(self, rng: random.Random, keep_mtime: bool, run_id: str | None = None) -> None:
        run_id = run_id or self.any_run()
        if run_id is None:
            return
        documents = self.setup.documents
        names = [
            n
            for n in documents.run_documents(run_id)
            if "/.journals/" not in n and not n.endswith(".lock")
        ]
        if not names:
            return
        name = rng.choice(names)
        data = documents.read(name)
        changed = _same_size_change(data, rng)
        if changed is None:
            return
        self.note(
            f"{run_id}: {name} rewritten in place, same size"
            + (", mtime put back" if keep_mtime else "")
        )
        documents.write(name, changed, keep_mtime=keep_mtime)
        self.runs[run_id].writer = ""

    def do_rewrite_same_size(self, rng: random.Random) -> None:
        self.rewrite(rng, keep_mtime=False)

    def do_rewrite_same_size_same_mtime(self, rng: random.Random) -> None:
        if isinstance(self.setup.documents, FolderDocuments):
            self.rewrite(rng, keep_mtime=True)

    def do_rewrite_right_after_search(self, rng: random.Random) -> None:
        """A run rewritten, summarized by a search and rewritten again, in place with the same
        size, each right after the other: on a file system whose clock ticks coarser than that,
        the second change leaves the stamp as the search saw it, and only the racy-clean rule
        (a run changed within a tick of being summarized is read again) finds it."""
        run_id = self.any_run()
        if run_id is None:
            return
        self.note(f"{run_id} rewritten, searched and rewritten at once, three times")
        for _ in range(3):
            self.rewrite(rng, keep_mtime=False, run_id=run_id)
            self.store.search_runs(f"run_id = '{run_id}'")
            self.rewrite(rng, keep_mtime=False, run_id=run_id)

    def do_truncate_to_garbage(self, rng: random.Random) -> None:
        run_id = self.any_run()
        if run_id is None:
            return
        documents = self.setup.documents
        names = [
            n
            for n in documents.run_documents(run_id)
            if "/.journals/" not in n and not n.endswith(".lock")
        ]
        if not names:
            return
        name = rng.choice(names)
        data = documents.read(name)
        garbage = data[: rng.randrange(max(1, len(data)))] + rng.choice([b"", b"\x00\xff{", b"]]"])
        self.note(f"{run_id}: {name} truncated to {len(garbage)} bytes of garbage")
        documents.write(name, garbage)
        self.runs[run_id].writer = ""

    def do_kill_writer(self, rng: random.Random) -> None:
        writer = rng.choice(sorted(self.workers))
        run_id = self.new_id("k")
        plan = self.planner.slow_create(run_id)
        self.runs[run_id] = Run("")
        delay = rng.uniform(0, self.write_seconds)
        self.note(f"{writer} writes {run_id} slowly, SIGKILLed after {delay * 1000:.0f} ms")
        worker = self.workers[writer]
        started = time.monotonic()
        worker.begin(plan)
        if worker.conn is not None and worker.conn.poll(delay):
            worker.finish("slow create")
            self.write_seconds = max(self.write_seconds, time.monotonic() - started)
        worker.kill()

    def do_kill_searcher(self, rng: random.Random) -> None:
        """A searching process SIGKILLed at a random moment of its search (the index deleted
        first, most times), then another once it has begun building the index again."""
        if rng.random() < 0.6:
            self.delete_index()
        searcher = rng.choice(self.searchers)
        request = self.search_request(None, None, 100)
        delay = rng.uniform(0, min(self.search_seconds * 1.2, 0.3))
        self.note(f"{searcher.name} searches, SIGKILLed after {delay * 1000:.1f} ms")
        searcher.begin(request)
        if searcher.conn is not None and searcher.conn.poll(delay):
            searcher.finish("search before its kill")
        searcher.kill()

        self.delete_index()
        searcher = rng.choice(self.searchers)
        searcher.begin({**request, "report_indexing": True})
        assert searcher.conn is not None
        if not searcher.conn.poll(WORKER_TIMEOUT):
            raise WorkerError(f"{searcher.name} did not answer")
        message = searcher.conn.recv()
        if message[0] != "indexing":  # nothing to index: the search is over
            self.note(f"{searcher.name} searches, with nothing to index")
            if message[0] == "error":
                self.fail(f"a search failed in a process of its own:\n{message[1]}")
            return
        delay = rng.uniform(0, 0.005 + 0.002 * message[1])
        self.note(
            f"{searcher.name} indexes {message[1]} runs, SIGKILLed after {delay * 1000:.1f} ms"
        )
        time.sleep(delay)
        searcher.kill()

    def do_search_while_writing(self, rng: random.Random) -> None:
        """Searching processes run while writers write, and meanwhile a run may be removed or
        copied by hand, the index deleted or truncated: no search may fail (what they answer
        depends on the moment; the checks after the step compare exactly)."""
        runs = self.written_runs()
        writers: list[tuple[Worker, dict[str, Any]]] = []
        for name in rng.sample(sorted(self.workers), rng.randint(1, len(self.workers))):
            own = [r for r in runs if self.runs[r].writer == name]
            if own and rng.random() < 0.5:
                run_id = rng.choice(own)
                plan = self.planner.change(run_id, self.runs[run_id].steps)
                if plan["op"] == "step":
                    self.runs[run_id].steps.add(plan["step"]["internal_name"])
            else:
                run_id = self.new_id("r")
                plan = self.planner.create(run_id)
                self.runs[run_id] = Run(name, {s["internal_name"] for s in plan["steps"]})
            writers.append((self.workers[name], plan))
        doing = ", ".join(f"{w.name} {p['op']}s {p['run_id']}" for w, p in writers)
        self.note(f"searches while {doing}")
        searches = [
            (s, self.search_request(random_filter(rng, self.written_runs()), random_order(rng), 3))
            for s in self.searchers
        ]
        for searcher, request in searches:
            searcher.begin(request)
        for worker, plan in writers:
            worker.begin(plan)
        meanwhile = rng.choice(
            ["", "remove_by_hand", "copy_by_hand", "index_deleted", "index_truncated"]
        )
        if meanwhile:
            self.busy = {plan["run_id"] for _, plan in writers}
            try:
                self.act(meanwhile)
            finally:
                self.busy = set()
        for searcher, request in searches:
            try:
                searcher.finish("search while writing")
            except WorkerError as exc:
                self.fail(f"a search while writers wrote failed: {request}\n{exc}")
        for worker, _ in writers:
            worker.finish("write while searching")

    def delete_index(self) -> None:
        for path in self.index_files():
            for suffix in ("", *INDEX_SIDE_FILES):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    def do_index_deleted(self, rng: random.Random) -> None:
        self.note(f"index deleted: {[p.name for p in self.index_files()]}")
        self.delete_index()

    def do_index_corrupted(self, rng: random.Random) -> None:
        """Garbage written over the index: over its header, over the text of its schema (bytes
        that are not UTF-8 in every table's SQL, which SQLite parses when it opens the file;
        in its write-ahead log too, where the newest copy of that page may be), or over the
        start of a page (its b-tree header, which SQLite checks whenever it reads the page). The
        kinds take turns, from a different one in each store's sequence.

        Damage SQLite cannot see (bytes changed inside a stored value, the header intact) is
        not made: no index without checksums can tell it from a value (docs/format.md)."""
        for path in self.index_files():
            kind = CORRUPTIONS[(self.seed + self.corruptions) % len(CORRUPTIONS)]
            self.corruptions += 1
            data = path.read_bytes()
            damage: list[tuple[Path, int, bytes]] = []
            if kind == "header":
                junk = bytes(rng.randrange(256) for _ in range(rng.choice([8, 64])))
                damage.append((path, rng.choice([0, 16, 100]), junk))
            elif kind == "schema":
                for where in (path, Path(f"{path}-wal")):
                    text = where.read_bytes() if where.is_file() else b""
                    for at in _find_all(text, b"CREATE TABLE"):
                        junk = bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randint(2, 4)))
                        damage.append((where, at + rng.randrange(2, 8), junk))
            else:
                # A page's first byte says what it is: 0 is no kind of page.
                page_size = int.from_bytes(data[16:18], "big") or 65536 if len(data) > 18 else 0
                pages = len(data) // page_size if page_size else 0
                junk = bytes([0, *(rng.randrange(256) for _ in range(rng.choice([8, 64, 512])))])
                at = rng.randrange(1, pages) * page_size if pages > 1 else 0
                damage.append((path, at, junk))
            for where, at, junk in damage:
                self.note(f"index {where.name}: {len(junk)} bytes of garbage at {at} ({kind})")
                with where.open("r+b") as file:
                    file.seek(at)
                    file.write(junk)

    def do_index_truncated(self, rng: random.Random) -> None:
        for path in self.index_files():
            size = path.stat().st_size
            keep = rng.choice([0, 50, size // 2, max(0, size - 1)])
            self.note(f"index {path.name} truncated from {size} to {keep} bytes")
            os.truncate(path, keep)

    def do_index_locked(self, rng: random.Random) -> None:
        """Another process holds the index in an exclusive transaction while a run changes and
        searches need to write what changed: a search waits (a short lock) or answers without
        the index (a lock held longer than it waits), never wrongly and never with an error.
        For the long lock the searches of this process wait less than the library's bound, so
        the test need not hold a lock for that long."""
        from runlog_store.search import index

        files = self.index_files()
        if not files:
            return
        longer = rng.random() < 0.5
        seconds = 1.0 if longer else rng.choice([0.2, 0.6])
        self.note(
            f"index {files[0].name} locked by another process for {seconds:.1f} s"
            + (f" (searches here wait {SHORT_WAIT} s)" if longer else "")
        )
        self.locker.begin({"op": "lock", "path": str(files[0]), "seconds": seconds})
        waited = index.BUSY_SECONDS
        try:
            if longer:
                index.BUSY_SECONDS = SHORT_WAIT
            self.do_create(rng)
            self.check(queries=2, callers=["own", "fresh"] if longer else None)
        finally:
            index.BUSY_SECONDS = waited
            self.locker.finish("lock")

    # --- the checks -------------------------------------------------------------------------

    def search_request(self, filter: str | None, order: Any, page_size: int) -> dict[str, Any]:
        return {"op": "search", "filter": filter, "order": order, "page_size": page_size}

    def reference(self) -> tuple[BaseRunLogStore, dict[str, RunSummary]]:
        """Every listed run's summary, as the scan reads them, from a store object of its own."""
        store = self.open_store()
        summaries = {}
        for run_id in store.list_run_ids():
            with contextlib.suppress(RunLogNotFoundError):
                summaries[run_id] = read_summary(store, run_id)
        return store, summaries

    def searched(self, caller: str, filter: str | None, order: Any, page_size: int) -> list[str]:
        request = self.search_request(filter, order, page_size)
        if caller == "process":
            searcher = self.rng.choice(self.searchers)
            started = time.monotonic()
            answer: list[str] = searcher.call(request)
            self.search_seconds = max(self.search_seconds, time.monotonic() - started)
            return answer
        if caller == "iter_runs":
            return [canonical(s) for s in self.store.iter_runs(filter, order, page_size)]
        store = self.store if caller == "own" else self.open_store()
        return _property_worker.search(store, request)

    def check(self, queries: int = QUERIES_PER_STEP, callers: list[str] | None = None) -> None:
        rng = self.rng
        self.checks += 1
        store, summaries = self.reference()
        run_ids = sorted(summaries)
        for number in range(queries):
            filter = random_filter(rng, run_ids) if rng.random() < 0.9 else rng.choice([None, ""])
            order = random_order(rng)
            page_size = rng.choice([1, 2, 3, 5, 100])
            caller = (
                callers[number % len(callers)]
                if callers
                else rng.choice(["own", "fresh", "process", "iter_runs"])
            )
            try:
                expr = query.parse_filter(filter)
                keys = query.parse_order_by(order)
            except Exception as exc:
                self.fail(f"a filter of the language was refused: {filter!r} / {order!r}: {exc!r}")
            expected = [
                canonical(s)
                for s in query.sort_runs(
                    [s for s in summaries.values() if query.matches(expr, s)], keys
                )
            ]
            try:
                got = self.searched(caller, filter, order, page_size)
            except WorkerError as exc:
                self.fail(
                    f"search_runs({filter!r}, {order!r}) failed in a process of its own:\n{exc}"
                )
            except Exception as exc:
                self.fail(f"search_runs({filter!r}, {order!r}) failed ({caller} store): {exc!r}")
            if got != expected:
                call = f"search_runs({filter!r}, {order!r}, max_results={page_size})"
                self.fail(
                    _difference(
                        f"{call} by the {caller} store",
                        expected,
                        got,
                    )
                )
        self.check_independently(store, summaries)

    def check_independently(self, store: BaseRunLogStore, summaries: dict[str, RunSummary]) -> None:
        """One filter judged over full run logs, without summaries or the query module."""
        rng = self.rng
        filter, judge = rng.choice(independent_filters(rng))
        readable: dict[str, Any] = {}
        for run_id, summary in summaries.items():
            if summary.status == "UNREADABLE":
                continue
            with contextlib.suppress(Exception):
                readable[run_id] = store.get_run_log_by_id(run_id, full=True)
        expected = sorted(r for r, run in readable.items() if judge(run))
        caller = rng.choice(["own", "fresh", "process"])
        got = sorted(json.loads(s)["run_id"] for s in self.searched(caller, filter, None, 100))
        got = [r for r in got if r in readable]
        if got != expected:
            self.fail(
                f"search_runs({filter!r}) by the {caller} store is not what the full run logs say\n"
                f"  expected (full logs): {expected}\n  got: {got}"
            )

    # --- the sequence -------------------------------------------------------------------------

    def run(self, steps: int) -> None:
        for _ in range(INITIAL_RUNS):
            self.create()
        self.note("first check")
        self.check()
        actions = list(ACTIONS)
        self.rng.shuffle(actions)
        while len(actions) < steps:
            actions += self.rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))
        for self.step, action in enumerate(actions, start=1):
            started = time.monotonic()
            self.act(action)
            acted = time.monotonic()
            self.check()
            self.seconds[action] = self.seconds.get(action, 0.0) + acted - started
            self.seconds["(checks)"] = self.seconds.get("(checks)", 0.0) + time.monotonic() - acted
        spent = ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(self.seconds.items(), key=lambda i: -i[1])
        )
        print(f"seed {self.seed} ({self.setup.store_type}): {len(actions)} steps, seconds: {spent}")
        print("\n".join(self.history))


def _difference(what: str, expected: list[str], got: list[str]) -> str:
    expected_ids = [json.loads(s)["run_id"] for s in expected]
    got_ids = [json.loads(s)["run_id"] for s in got]
    lines = [
        f"{what} is not the scan's answer",
        f"  scan:   {expected_ids}",
        f"  search: {got_ids}",
    ]
    for position, (want, have) in enumerate(zip(expected, got, strict=False)):
        if want != have:
            want_fields, have_fields = json.loads(want), json.loads(have)
            differing = {
                k: (want_fields.get(k), have_fields.get(k))
                for k in sorted(set(want_fields) | set(have_fields))
                if want_fields.get(k) != have_fields.get(k)
            }
            lines.append(f"  first difference at {position}: (scan, search) = {differing}")
            break
    return "\n".join(lines)


# --- the tests ---------------------------------------------------------------------------------


def _folder_setup(store_type: str, tmp_path: Path) -> Setup:
    folder = tmp_path / "logs"
    folder.mkdir()
    chunked = store_type == "chunked-fs"
    ours = {
        "kind": "ours",
        "type": store_type,
        "config": {"log_folder": str(folder), "fsync": False},
    }
    theirs = {"kind": "runnable-chunked" if chunked else "runnable-fs", "log_folder": str(folder)}
    return Setup(
        store_type,
        ours,
        {"ours": ours, "runnable": theirs},
        FolderDocuments(folder, chunked),
        folder,
        tmp_path / "cache",
    )


def _object_setup(store_type: str, tmp_path: Path, server: MinioServer, bucket: str) -> Setup:
    config = {
        "endpoint_url": server.endpoint,
        "aws_access_key_id": server.access_key,
        "aws_secret_access_key": server.secret_key,
        "bucket": f"{bucket}/runs",
    }
    ours = {"kind": "ours", "type": store_type, "config": config}
    client = Minio(
        server.host_port, access_key=server.access_key, secret_key=server.secret_key, secure=False
    )
    documents = ObjectDocuments(client, bucket, "runs", store_type == "chunked-minio")
    return Setup(store_type, ours, {"ours": ours}, documents, None, tmp_path / "cache")


@contextlib.contextmanager
def _sequence(seed: int, setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sequence]:
    setup.cache.mkdir(exist_ok=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(setup.cache))
    sequence = Sequence(seed, setup)
    try:
        yield sequence
    finally:
        sequence.close()


def _run_sequences(
    store_type: str,
    make_setup: Callable[[Path, int], Setup],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``SEQUENCES`` sequences of ``STEPS`` steps, each on a store of its own; the seeds differ
    per store type, so the four types do not replay the same choices."""
    offset = STORE_TYPES.index(store_type)
    for n in range(SEQUENCES):
        folder = tmp_path / f"sequence{n}"
        folder.mkdir()
        with _sequence(FIRST_SEED + 1000 * n + offset, make_setup(folder, n), monkeypatch) as it:
            it.run(STEPS)


@pytest.mark.parametrize("store_type", ["file-system", "chunked-fs"])
def test_search_equals_scan_on_a_folder(
    store_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run_sequences(
        store_type, lambda folder, n: _folder_setup(store_type, folder), tmp_path, monkeypatch
    )


@pytest.mark.parametrize("store_type", ["minio", "chunked-minio"])
def test_search_equals_scan_in_a_bucket(
    store_type: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    minio_server: MinioServer,
    minio_bucket: str,
) -> None:
    def setup(folder: Path, n: int) -> Setup:
        return _object_setup(store_type, folder, minio_server, f"{minio_bucket}-{n}")

    _run_sequences(store_type, setup, tmp_path, monkeypatch)
