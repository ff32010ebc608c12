"""Hostile trees, fuzzed: a log folder or a catalog someone else can write into, changed in
every way ``trees`` knows (symlinks out of the folder and to devices, FIFOs, sockets, bad
names, oversized and deeply nested documents, planted locks, journals, snapshots, caches and
manifests), then every read, write, copy, gc and sweep of the library and every ``runlog``
command run on it.

Each call runs in a process of its own, forked from a server that imported the package once,
with a deadline and a cap on its address space. Each must:

- return in time (a FIFO or ``/dev/zero`` must not hang it) within the memory cap;
- succeed or fail with a typed error: a ``RunLogStoreError`` from the library; from the
  command line exit status 0 (1 for a "no" from diff and verify), or 2 with one-line
  ``error:`` messages, never a traceback nor an "unexpected" error;
- print no control character a terminal would obey (the output is not a terminal: any escape
  in it came from stored data), and ``--json`` output that parses;
- leave every sentinel outside the trees as it was, and put none of their bytes in a file
  inside a tree (no write, delete or copy through a link out of the folders it was given);
- change no other run's files than the ones it was asked about;
- hand out the run asked for, not another one;
- lose no acknowledged write: a write that returned is seen by a read in a fresh process,
  when that read succeeds on the tree;
- never restore setuid, setgid or sticky bits in the files it writes.

``RUNLOG_FUZZ_EXAMPLES`` sets the trees per test (default 25), ``RUNLOG_FUZZ_TIMEOUT`` the
seconds a call may take (default 6), ``RUNLOG_FUZZ_MEMORY_MB`` its address space (default
2048), ``RUNLOG_FUZZ_SHRINK=1`` lets hypothesis shrink a failing tree to a smaller one.
Examples are derandomized, so CI runs the same trees every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import select
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

from . import trees
from .trees import ENDED_RUNS, LIVE_RUN, TOKEN, Mutation, Tree, TreeSpec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("RUNLOG_FUZZ_EXAMPLES", "25"))
TIMEOUT = float(os.environ.get("RUNLOG_FUZZ_TIMEOUT", "6"))
MEMORY = int(os.environ.get("RUNLOG_FUZZ_MEMORY_MB", "2048")) << 20
PHASES = [Phase.explicit, Phase.generate]
if os.environ.get("RUNLOG_FUZZ_SHRINK") == "1":
    PHASES.append(Phase.shrink)
MAX_HANGS = 2  # after this many calls out of time on one tree, the rest are not run
SCAN_LIMIT = 4 << 20  # files larger than this are not searched for the sentinels' bytes
MARK = "written-by-the-fuzz-test"
FRESH_RUN = "run-fresh"

PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- the child side: what each call does, in the forked process -------------------------------


def _nested(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _depth(value: object) -> int:
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    return depth


def _fuzz_value(deep: int) -> object:
    return _nested(deep) if deep else 4242


def _store(args: dict[str, Any]) -> Any:
    from runlog_store.config import load_store
    from runlog_store.stores.project import ProjectRunLogStore

    if args["config"] is None:
        return ProjectRunLogStore()
    return load_store(args["config"])


def _catalog(args: dict[str, Any], compute: str | None = None) -> Any:
    from runlog_store.config import load_catalog

    catalog = load_catalog(args["catalog_config"])
    if compute is not None:
        catalog = catalog.model_copy(update={"compute_data_folder": compute})
    return catalog


def _json(data: bytes | str) -> object:
    """JSON as runnable writes it (``NaN`` and the infinities are values runnable stores)."""
    return json.loads(data)


def _op_get(args: dict[str, Any]) -> object:
    run = _store(args).get_run_log_by_id(args["run_id"], full=args["full"])
    return {"run_id": run.run_id}


def _op_get_json(args: dict[str, Any]) -> object:
    data = _store(args).get_run_log_json(args["run_id"])
    try:
        document = _json(data)
    except RecursionError:
        return {"run_id": args["run_id"], "json": "too deep to check here"}
    except ValueError as exc:
        return {"run_id": args["run_id"], "json": f"not JSON: {exc}"}
    run_id = document.get("run_id") if isinstance(document, dict) else None
    return {"run_id": run_id, "json": "ok"}


def _op_salvage(args: dict[str, Any]) -> object:
    return {"run_id": _store(args).salvage_run_log(args["run_id"]).run_log.run_id}


def _op_list(args: dict[str, Any]) -> object:
    return {"run_ids": _store(args).list_run_ids()}


def _op_get_run_logs(args: dict[str, Any]) -> object:
    return {"run_ids": [run.run_id for run in _store(args).get_run_logs()]}


def _op_add_step(args: dict[str, Any]) -> object:
    store = _store(args)
    step = store.create_step_log("fuzz", "fuzz")
    step.message = MARK
    step.status = "SUCCESS"
    store.add_step_log(step, args["run_id"])
    return None


def _op_set_parameters(args: dict[str, Any]) -> object:
    from runlog_store import JsonParameter

    value = JsonParameter(kind="json", value=_fuzz_value(args["deep"]))
    _store(args).set_parameters(args["run_id"], {"fuzz_param": value})
    return None


def _op_status(args: dict[str, Any]) -> object:
    _store(args).update_run_log_status(args["run_id"], "FAIL")
    return None


def _op_create(args: dict[str, Any]) -> object:
    _store(args).create_run_log(args["run_id"], tag=MARK)
    return None


def _op_delete(args: dict[str, Any]) -> object:
    _store(args).delete_run(args["run_id"])
    return None


def _op_expect(args: dict[str, Any]) -> object:
    """Is the write that returned there, read by a fresh process? A typed error of the read
    itself is raised (no claim on this tree)."""
    from runlog_store.exceptions import RunLogNotFoundError

    what, run_id = args["what"], args["run_id"]
    store = _store(args)
    if what == "gone":
        try:
            store.get_run_log_by_id(run_id, full=True)
        except RunLogNotFoundError:
            return {"visible": True}
        return {"visible": False, "saw": "the deleted run is still read"}
    run = store.get_run_log_by_id(run_id, full=True)
    if what == "step":
        step = run.steps.get("fuzz")
        seen = step.message if step is not None else "no step 'fuzz'"
        return {"visible": seen == MARK, "saw": seen}
    if what == "param":
        found = run.parameters.get("fuzz_param")
        value = found.get_value() if found is not None else None
        expected = _fuzz_value(args["deep"])
        if isinstance(expected, list):
            return {"visible": _depth(value) == _depth(expected), "saw": f"depth {_depth(value)}"}
        return {"visible": value == expected, "saw": repr(value)[:200]}
    if what == "status":
        return {"visible": run.status == "FAIL", "saw": run.status}
    if what == "exists":
        return {"visible": run.run_id == run_id and run.tag == MARK, "saw": run.tag[:200]}
    if what == "copied":
        return {"visible": run.run_id == run_id, "saw": run.run_id}
    raise ValueError(what)


def _op_cat_get(args: dict[str, Any]) -> object:
    entries = _catalog(args).get(args["pattern"], run_id=args["run_id"])
    return {"names": [entry.name for entry in entries]}


def _op_cat_put(args: dict[str, Any]) -> object:
    catalog = _catalog(args)
    entries = catalog.put("*", run_id=args["run_id"])
    root = Path(catalog.compute_data_folder)
    return {
        "files": {
            entry.name: hashlib.sha256((root / entry.name).read_bytes()).hexdigest()
            for entry in entries
        }
    }


def _op_cat_files(args: dict[str, Any]) -> object:
    return {"files": sorted(_catalog(args).run_files(args["run_id"]))}


def _op_cat_sweep(args: dict[str, Any]) -> object:
    swept = _catalog(args).sweep_contents(dry_run=args["dry_run"])
    return {"removed": swept.removed, "contents": swept.contents}


def _op_cat_delete(args: dict[str, Any]) -> object:
    return {"removed": _catalog(args).delete_run(args["run_id"])}


def _op_cat_expect(args: dict[str, Any]) -> object:
    """Are the files a put acknowledged there, got by a fresh process into a folder of its
    own? The run's listing is read first: a typed error there is no claim on this tree."""
    from runlog_store.exceptions import RunLogStoreError

    run_id, into = args["run_id"], Path(args["into"])
    into.mkdir(parents=True, exist_ok=True)
    catalog = _catalog(args, compute=str(into))
    listed = catalog.run_files(run_id)
    if args["files"] is None:  # after a delete
        return {"visible": not listed, "saw": f"{len(listed)} files listed"}
    wrong = []
    for name, digest in args["files"].items():
        try:
            catalog.get(name, run_id=run_id)
            got = hashlib.sha256((into / name).read_bytes()).hexdigest()
        except RunLogStoreError as exc:
            wrong.append(f"{name!r}: {type(exc).__name__}: {exc}")
            continue
        if got != digest:
            wrong.append(f"{name!r}: other bytes")
    return {"visible": not wrong, "saw": "; ".join(wrong)[:1000]}


OPS: dict[str, Callable[[dict[str, Any]], object]] = {
    "get": _op_get,
    "get_json": _op_get_json,
    "salvage": _op_salvage,
    "list": _op_list,
    "get_run_logs": _op_get_run_logs,
    "add_step": _op_add_step,
    "set_parameters": _op_set_parameters,
    "status": _op_status,
    "create": _op_create,
    "delete": _op_delete,
    "expect": _op_expect,
    "cat_get": _op_cat_get,
    "cat_put": _op_cat_put,
    "cat_files": _op_cat_files,
    "cat_sweep": _op_cat_sweep,
    "cat_delete": _op_cat_delete,
    "cat_expect": _op_cat_expect,
}


def _library(op: str, args: dict[str, Any]) -> dict[str, Any]:
    from runlog_store.exceptions import RunLogStoreError

    try:
        return {"outcome": "ok", "value": OPS[op](args)}
    except RunLogStoreError as exc:
        return {"outcome": "typed", "type": type(exc).__name__, "message": str(exc)[:2000]}
    except BaseException as exc:  # what the test looks for
        return {
            "outcome": "untyped",
            "type": type(exc).__name__,
            "message": str(exc)[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }


def _run_command(argv: list[str]) -> dict[str, Any]:
    """``runlog argv``, as the console script runs it."""
    from runlog_store.cli.app import main

    sys.argv = ["runlog", *argv]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # as the interpreter: print it, exit 1
        traceback.print_exc()
        code = 1
    return {"outcome": "exit", "code": code}


def _child(request: dict[str, Any]) -> None:
    os.setsid()
    resource.setrlimit(resource.RLIMIT_AS, (request["memory"], request["memory"]))
    os.chdir(request["cwd"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        out = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, fd)
        os.close(out)
    # sys.stdout and sys.stderr write to the descriptors just replaced (the server flushed its
    # own output before forking).
    if request["op"] == "cli":
        result = _run_command(request["args"]["argv"])
    else:
        result = _library(request["op"], request["args"])
    sys.stdout.flush()
    sys.stderr.flush()
    with open(request["result"], "w") as written:
        written.write(json.dumps(result))


def _forked(request: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            _child(request)
        except BaseException:
            code = 3
        os._exit(code)
    deadline = started + request["timeout"]
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return {"status": "timeout", "seconds": time.monotonic() - started}
        time.sleep(0.002)
    reply: dict[str, Any] = {
        "seconds": time.monotonic() - started,
        "max_rss_mb": usage.ru_maxrss // 1024,
    }
    if os.WIFSIGNALED(status):
        reply.update(status="signal", signal=signal.Signals(os.WTERMSIG(status)).name)
    else:
        reply.update(status="exited", code=os.WEXITSTATUS(status))
    return reply


def serve() -> None:
    """The fork server: imports everything a call needs once, then forks a child per request
    (one JSON line in, one out), so each call starts fresh in a fraction of the time a new
    interpreter takes. Nothing here starts a thread, so forking is safe."""
    import runlog_store.catalogs.content_fs
    import runlog_store.catalogs.file_system
    import runlog_store.cli.app
    import runlog_store.cli.timeline
    import runlog_store.ops.diff
    import runlog_store.ops.runs
    import runlog_store.ops.transfer
    import runlog_store.ops.verify
    import runlog_store.stores.project  # noqa: F401
    from runlog_store import create_catalog, create_store

    with tempfile.TemporaryDirectory() as scratch:  # the entry points, found once
        for layout in trees.STORE_LAYOUTS:
            create_store(layout, log_folder=os.path.join(scratch, "logs"))
        for layout in trees.CATALOG_LAYOUTS:
            create_catalog(layout, catalog_location=os.path.join(scratch, "catalog"))
    assert len(os.listdir("/proc/self/task")) == 1, "the fork server must have one thread"
    for line in sys.stdin:
        reply = _forked(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


# --- the parent side --------------------------------------------------------------------------


class ForkServer:
    def __init__(self) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if key
            not in (
                "RUNNABLE_CONFIGURATION_FILE",
                "FORCE_COLOR",
                "PY_COLORS",
                "CLICOLOR_FORCE",
                "TTY_COMPATIBLE",
                "TTY_INTERACTIVE",
            )
        }
        env.update(COLUMNS="160", PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
        self.scratch = Path(tempfile.mkdtemp(prefix="runlog-fuzz-calls-"))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.hostile.test_fuzz import serve; serve()"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.count = 0

    def call(self, op: str, args: dict[str, Any], cwd: Path) -> CallResult:
        self.count += 1
        files = {name: self.scratch / f"{self.count}.{name}" for name in ("out", "err", "json")}
        for path in files.values():
            path.unlink(missing_ok=True)
        request = {
            "op": op,
            "args": args,
            "cwd": str(cwd),
            "timeout": TIMEOUT,
            "memory": MEMORY,
            "stdout": str(files["out"]),
            "stderr": str(files["err"]),
            "result": str(files["json"]),
        }
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT + 30)
        assert ready, "the fork server stopped answering"
        line = self.proc.stdout.readline()
        assert line, f"the fork server died (exit status {self.proc.poll()})"
        reply = json.loads(line)
        result = json.loads(files["json"].read_text()) if files["json"].exists() else None
        out = files["out"].read_bytes() if files["out"].exists() else b""
        err = files["err"].read_bytes() if files["err"].exists() else b""
        for path in files.values():
            path.unlink(missing_ok=True)
        return CallResult(reply, result, out, err)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        trees.remove_tree(self.scratch)


@dataclass
class CallResult:
    reply: dict[str, Any]
    result: dict[str, Any] | None
    out: bytes
    err: bytes


@dataclass
class Call:
    """One call: ``label`` says it as a user would write it."""

    label: str
    op: str
    args: dict[str, Any]
    runs: tuple[str, ...] | None = None  # the runs it may change; None: any
    expect: dict[str, Any] | None = None  # the read that must see its write, once it returned
    json_output: bool = False  # a command whose stdout is JSON
    answers_no: bool = False  # a command whose exit status 1 means "no" (diff, verify)


# What runlog writes on stderr beside its errors.
STDERR_LINES = ("error:", "note:", "warning:", "Contents:")
# C0 controls but tab and newline, DEL, and C1 controls as UTF-8 (what a terminal obeys).
CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


@dataclass
class Harness:
    server: ForkServer
    tree: Tree
    failures: list[str] = field(default_factory=list)
    hangs: int = 0
    sentinels: dict[str, tuple[object, ...]] = field(default_factory=dict)
    scanned: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def fail(self, label: str, what: str) -> None:
        self.failures.append(f"{label}: {what}")

    def base_args(self) -> dict[str, Any]:
        tree = self.tree
        return {
            "config": str(tree.config) if tree.config else None,
            "catalog_config": str(tree.catalog_config),
        }

    def run_all(self, calls: list[Call]) -> None:
        self.sentinels = trees.snapshot_outside(self.tree)
        self.scan_inside()  # what is there before any call is no leak of a call's
        for call in calls:
            if self.hangs >= MAX_HANGS:
                self.failures.append(f"(the calls after the {MAX_HANGS} hung were not run)")
                return
            self.run(call)

    def run(self, call: Call) -> CallResult | None:
        before = self.folders_state() if call.runs is not None else {}
        done = self.server.call(call.op, {**self.base_args(), **call.args}, self.tree.work)
        self.check_reply(call, done)
        self.check_outside(call)
        if call.runs is not None:
            self.check_other_runs(call, before)
        outcome = done.result or {}
        returned = outcome.get("outcome") == "ok" or (
            outcome.get("outcome") == "exit" and outcome.get("code") == 0
        )
        if call.expect is not None and returned:
            self.check_acknowledged(call, done)
        return done

    # --- the checks ---------------------------------------------------------------------------

    def check_reply(self, call: Call, done: CallResult) -> None:
        reply, result = done.reply, done.result
        if reply["status"] == "timeout":
            self.hangs += 1
            self.fail(call.label, f"did not return within {TIMEOUT:g} s")
            return
        if reply["status"] == "signal":
            self.fail(call.label, f"killed by {reply['signal']} ({self.tail(done.err)})")
            return
        if result is None:
            self.fail(
                call.label, f"the child died, exit {reply.get('code')}: {self.tail(done.err)}"
            )
            return
        if call.op != "cli":
            if result["outcome"] == "untyped":
                self.fail(
                    call.label,
                    f"raised {result['type']} (not a RunLogStoreError): {result['message'][:300]}"
                    f"\n{result['traceback'][-1500:]}",
                )
            elif result["outcome"] == "ok":
                self.check_value(call, result.get("value"))
            return
        self.check_command(call, result["code"], done.out, done.err)

    def check_value(self, call: Call, value: Any) -> None:
        if not isinstance(value, dict):
            return
        asked = call.args.get("run_id")
        if asked is not None and "run_id" in value and value["run_id"] != asked:
            self.fail(call.label, f"handed out run {value['run_id']!r} for run {asked!r}")
        if value.get("json", "ok") not in ("ok", "too deep to check here"):
            self.fail(call.label, f"gave bytes that are {value['json']}")
        run_ids = value.get("run_ids")
        if isinstance(run_ids, list) and len(set(run_ids)) != len(run_ids):
            self.fail(call.label, f"gave a run twice: {sorted(run_ids)}")

    def check_command(self, call: Call, code: int, out: bytes, err: bytes) -> None:
        for stream, data in (("stdout", out), ("stderr", err)):
            found = CONTROL.search(data)
            if found:
                at = max(found.start() - 40, 0)
                self.fail(
                    call.label,
                    f"printed the control character {found.group()!r} on {stream}: "
                    f"{data[at : found.end() + 40]!r}",
                )
        if b"Traceback (most recent call last)" in err:
            self.fail(call.label, f"printed a traceback (exit {code}): {self.tail(err)}")
            return
        if code == 0 or (code == 1 and call.answers_no):
            if call.json_output and code == 0:
                try:
                    _json(out)
                except RecursionError:
                    pass
                except ValueError as exc:
                    self.fail(call.label, f"printed --json output that is not JSON: {exc}")
            return
        # An error is one line; gc says one per run it could not delete, beside its notes.
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        others = [line for line in lines if not line.startswith(STDERR_LINES)]
        if code != 2 or not errors or others:
            self.fail(call.label, f"exit {code} with stderr {self.tail(err)}")
        for line in errors:
            if line.startswith("error: unexpected"):
                self.fail(call.label, f"an error that is not a typed one: {line[:400]}")

    def check_outside(self, call: Call) -> None:
        now = trees.snapshot_outside(self.tree)
        if now != self.sentinels:
            changed = sorted(
                name
                for name in set(now) | set(self.sentinels)
                if now.get(name) != self.sentinels.get(name)
            )
            self.fail(call.label, f"changed what is outside the folders it was given: {changed}")
            self.sentinels = now
        leaks = self.scan_inside()
        if leaks:
            self.fail(call.label, f"copied bytes from outside (through a link) into {leaks}")
        for folder in (self.tree.work, self.tree.target_logs, self.tree.target_catalog):
            for path in _walk(folder):
                mode = path.lstat().st_mode
                special = stat.S_IMODE(mode) & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX)
                if stat.S_ISREG(mode) and special:
                    self.fail(call.label, f"wrote {path} with mode {stat.S_IMODE(mode):o}")
                    os.chmod(path, stat.S_IMODE(mode) & 0o777)

    def scan_inside(self) -> list[str]:
        """Files in the trees that hold the sentinels' token, among those new or changed."""
        leaks = []
        for folder in self.tree.given():
            for path in _walk(folder):
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode):
                    continue
                identity = (info.st_ino, info.st_size, info.st_mtime_ns)
                key = str(path)
                if self.scanned.get(key) == identity:
                    continue
                self.scanned[key] = identity
                if info.st_size > SCAN_LIMIT:
                    continue
                with contextlib.suppress(OSError):
                    if TOKEN.encode() in path.read_bytes():
                        leaks.append(str(path.relative_to(self.tree.base)))
        return leaks

    def folders_state(self) -> dict[str, tuple[int, int, int, int]]:
        state = {}
        for folder in (self.tree.logs, self.tree.catalog):
            for path in _walk(folder):
                info = path.lstat()
                if stat.S_ISDIR(info.st_mode):
                    continue
                key = str(path.relative_to(self.tree.base))
                state[key] = (info.st_mode, info.st_ino, info.st_size, info.st_mtime_ns)
        return state

    def check_other_runs(self, call: Call, before: dict[str, tuple[int, int, int, int]]) -> None:
        after = self.folders_state()
        touched = [
            name
            for name in sorted(set(before) | set(after))
            if before.get(name) != after.get(name) and not self.owned(name, call.runs or ())
        ]
        if touched:
            self.fail(call.label, f"changed files of other runs: {touched[:8]}")

    def owned(self, name: str, runs: tuple[str, ...]) -> bool:
        """Whether a file (relative to the base) belongs to one of ``runs``, or is shared by
        every run (content-fs's contents and locks, a hash cache)."""
        path = self.tree.base / name
        for folder in (self.tree.logs, self.tree.catalog):
            if folder in path.parents:
                parts = path.relative_to(folder).parts
                break
        else:
            return True
        if parts[0] == "objects" or parts[0].startswith(".runlog-"):
            return True  # contents, the store's locks, the hash cache: every run's
        if parts[0] == "manifests" and len(parts) > 1:
            parts = parts[1:]
        top = parts[0]
        return any(
            top in (run_id, f"{run_id}.json")
            or top.startswith((f".{run_id}.", f".{run_id}-", f".deleting-{run_id}-"))
            for run_id in runs
        )

    def check_acknowledged(self, call: Call, done: CallResult) -> None:
        expect = dict(call.expect or {})
        op = expect.pop("op", "expect")
        if op == "cat_expect" and expect.get("files") == "from-put":
            value = (done.result or {}).get("value") or {}
            expect["files"] = value.get("files", {})
        label = f"{call.label}, then a fresh read"
        read = self.server.call(op, {**self.base_args(), **expect}, self.tree.work)
        self.check_reply(Call(label, op, expect), read)
        outcome = read.result or {}
        value = outcome.get("value")
        if outcome.get("outcome") == "ok" and isinstance(value, dict) and not value["visible"]:
            self.fail(call.label, f"returned, but a fresh read does not see it: {value['saw']}")

    @staticmethod
    def tail(data: bytes) -> str:
        text = data.decode(errors="replace").strip()
        return repr(text[-1500:]) if text else "(nothing on stderr)"


def _walk(folder: Path) -> Iterator[Path]:
    """Every entry under ``folder``, links not followed."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            yield Path(root) / name


# --- the calls --------------------------------------------------------------------------------


def _library_calls(tree: Tree) -> list[Call]:
    calls: list[Call] = []
    for run_id in (*ENDED_RUNS, LIVE_RUN):
        for full in (True, False):
            calls.append(
                Call(
                    f"get_run_log_by_id({run_id!r}, full={full})",
                    "get",
                    {"run_id": run_id, "full": full},
                    runs=(run_id,),
                )
            )
        calls.append(
            Call(f"get_run_log_json({run_id!r})", "get_json", {"run_id": run_id}, (run_id,))
        )
        calls.append(Call(f"salvage_run_log({run_id!r})", "salvage", {"run_id": run_id}))
    calls.append(Call("list_run_ids()", "list", {}))
    calls.append(Call("get_run_logs()", "get_run_logs", {}))
    return calls


def _write_calls(tree: Tree) -> list[Call]:
    deep = tree.spec.deep_parameter

    def write(label: str, op: str, run_id: str, what: str) -> Call:
        return Call(
            label,
            op,
            {"run_id": run_id, "deep": deep},
            runs=(run_id,),
            expect={"run_id": run_id, "what": what, "deep": deep},
        )

    nesting = f"a list nested {deep} deep" if deep else "4242"
    return [
        write("add_step_log(step 'fuzz', 'run-a')", "add_step", "run-a", "step"),
        write("add_step_log(step 'fuzz', 'run-live')", "add_step", LIVE_RUN, "step"),
        write(f"set_parameters('run-a', fuzz_param={nesting})", "set_parameters", "run-a", "param"),
        write("update_run_log_status('run-live', 'FAIL')", "status", LIVE_RUN, "status"),
        write(f"create_run_log({FRESH_RUN!r})", "create", FRESH_RUN, "exists"),
        write(f"delete_run({FRESH_RUN!r})", "delete", FRESH_RUN, "gone"),
    ]


def _command(tree: Tree, *argv: str, **kw: Any) -> Call:
    config = ["-c", str(tree.config)] if tree.config is not None else []
    label = "runlog " + " ".join(argv)
    return Call(label, "cli", {"argv": [*argv, *config]}, **kw)


def _commands(tree: Tree) -> list[Call]:
    work = tree.work
    target = str(tree.target_config)
    return [
        _command(tree, "list"),
        _command(tree, "list", "--json", json_output=True),
        _command(tree, "show", "run-a", runs=("run-a",)),
        _command(tree, "show", "--json", "run-a", runs=("run-a",), json_output=True),
        _command(tree, "show", LIVE_RUN, runs=(LIVE_RUN,)),
        _command(tree, "diff", "run-a", "run-b", runs=ENDED_RUNS, answers_no=True),
        _command(
            tree, "diff", "--json", "run-b", LIVE_RUN, runs=("run-b", LIVE_RUN), answers_no=True
        ),
        _command(tree, "verify", "run-a", runs=("run-a",), answers_no=True),
        _command(tree, "timeline", "run-a", "-o", str(work / "timeline.html"), runs=("run-a",)),
        _command(
            tree,
            "copy",
            "run-a",
            "--to",
            target,
            runs=("run-a",),
            expect={"config": target, "run_id": "run-a", "what": "copied"},
        ),
        _command(tree, "fold", LIVE_RUN, runs=(LIVE_RUN,)),
    ]


def _gc_commands(tree: Tree, *extra: str) -> list[Call]:
    return [
        _command(tree, "gc", "--older-than", "1d", "--dry-run", *extra),
        _command(tree, "gc", "--older-than", "1d", "--include-unfinished", *extra),
    ]


def log_folder_calls(tree: Tree) -> list[Call]:
    return [
        *_library_calls(tree),
        *_commands(tree),
        *_write_calls(tree),
        *_gc_commands(tree),
    ]


def catalog_calls(tree: Tree) -> list[Call]:
    content = tree.spec.catalog_layout == "content-fs"
    readback = str(tree.work / "read-back")
    target = str(tree.target_config)

    def put(run_id: str) -> Call:
        return Call(
            f"catalog put('*', run_id={run_id!r})",
            "cat_put",
            {"run_id": run_id},
            runs=(run_id,),
            expect={
                "op": "cat_expect",
                "run_id": run_id,
                "files": "from-put",
                "into": f"{readback}-{run_id}",
            },
        )

    calls = []
    for run_id in ENDED_RUNS:
        calls.append(
            Call(f"catalog run_files({run_id!r})", "cat_files", {"run_id": run_id}, (run_id,))
        )
        calls.append(
            Call(
                f"catalog get('*', run_id={run_id!r})",
                "cat_get",
                {"run_id": run_id, "pattern": "*"},
                (run_id,),
            )
        )
    calls += [
        _command(tree, "verify", "run-a", runs=("run-a",), answers_no=True),
        _command(tree, "verify", "run-b", runs=("run-b",), answers_no=True),
        _command(
            tree,
            "copy",
            "run-a",
            "--with-catalog",
            "--to",
            target,
            runs=("run-a",),
            expect={"config": target, "run_id": "run-a", "what": "copied"},
        ),
        put("run-a"),
        put(FRESH_RUN),
        Call(
            f"catalog delete_run({FRESH_RUN!r})",
            "cat_delete",
            {"run_id": FRESH_RUN},
            runs=(FRESH_RUN,),
            expect={"op": "cat_expect", "run_id": FRESH_RUN, "files": None, "into": readback},
        ),
    ]
    if content:
        calls.append(Call("content sweep (dry run)", "cat_sweep", {"dry_run": True}))
        calls.append(Call("content sweep", "cat_sweep", {"dry_run": False}))
    calls += _gc_commands(tree, "--with-catalog")
    return calls


# --- the tests --------------------------------------------------------------------------------

# Trees every run checks before the generated ones: one at least for each way someone else
# can harm a reader that the stores defend against.
M = Mutation
LONG_NAME = "a" * 226 + ".csv"  # 230 bytes: no room left for a temp name's suffix
LOG_FOLDER_EXAMPLES = [
    # a document that says it is another run
    TreeSpec("file-system", "file-system", False, "logs", (M("document", "run-a.json", "swap"),)),
    TreeSpec(
        "chunked-fs",
        "file-system",
        False,
        "logs",
        (M("document", "run-a/RunLog.json", "swap"), M("merged", "run-b", "other-run")),
    ),
    TreeSpec(
        "chunked-fs",
        "content-fs",
        False,
        "logs",
        (M("journal", "run-a", "frame-other-run"), M("journal", LIVE_RUN, "frame-escapes")),
    ),
    # a lock linked to a file outside; a stamp as large as a stamp can be
    TreeSpec(
        "chunked-fs",
        "content-fs",
        False,
        "logs",
        (M("lock", "run-a", "symlink-secret"), M("lock", LIVE_RUN, "i64-max")),
    ),
    TreeSpec(
        "file-system",
        "file-system",
        False,
        "logs",
        (M("lock", "run-a", "symlink-secret"), M("lock", LIVE_RUN, "i64-max")),
    ),
    # terminal escapes in stored strings and in names, read as a project's runs
    TreeSpec(
        "chunked-fs",
        "file-system",
        True,
        "logs",
        (
            M("document", "run-a/RunLog.json", "escapes"),
            M("bad-name", ".", "\x1b]0;owned\x07\x1b[2J|copy"),
        ),
    ),
    # nesting: a stored document 100,000 deep, a parameter as deep as runnable's models take
    TreeSpec(
        "file-system",
        "file-system",
        False,
        "logs",
        (M("document", "run-b.json", "deep-100000"),),
        deep_parameter=255,
    ),
    # a FIFO as a document, a journal linked to /dev/zero
    TreeSpec(
        "chunked-fs",
        "file-system",
        False,
        "logs",
        (M("fifo", "run-b/RunLog.json"), M("journal", LIVE_RUN, "dev-zero")),
    ),
    # journals and an old run's folder linked to a folder outside (gc deletes old runs)
    TreeSpec(
        "chunked-fs",
        "content-fs",
        False,
        "logs",
        (M("journal", LIVE_RUN, "journals-symlink-outside"), M("symlink", "run-b", "outside/dir")),
    ),
    # links to themselves where a run's document and layout are
    TreeSpec(
        "chunked-fs",
        "file-system",
        True,
        "logs",
        (M("symlink", "run-b/RunLog.json", "loop"), M("symlink", "run-a/.layout", "loop")),
    ),
    TreeSpec("file-system", "file-system", False, "logs", (M("symlink", "run-b.json", "loop"),)),
    # names that are no run id
    TreeSpec(
        "file-system",
        "file-system",
        True,
        "logs",
        (M("bad-name", ".", "run-\udcff\udcfe|copy"), M("bad-name", ".", "r" * 250 + "|copy")),
    ),
    # NaN and the infinities, as runnable writes them
    TreeSpec(
        "chunked-fs",
        "file-system",
        False,
        "logs",
        (M("document", "run-b/RunLog.json", "nan"), M("document", "run-a/RunLog.json", "infinity")),
    ),
]
CATALOG_EXAMPLES = [
    # files and a run folder linked out of the catalog; setuid and setgid bits on a stored file
    TreeSpec(
        "file-system",
        "file-system",
        False,
        "catalog",
        (
            M("symlink", "run-a/input.csv", "outside/secret.txt"),
            M("symlink", "run-b", "outside/dir"),
            M("setuid", "run-a/model.bin", "6777"),
        ),
    ),
    # a content folder linked out of the catalog; a manifest recording every special bit; a
    # hash cache linked to a file outside
    TreeSpec(
        "chunked-fs",
        "content-fs",
        False,
        "catalog",
        (
            M("symlink", trees.object_folder("model.bin"), "outside/dir"),
            M("manifest", "run-a", "all-bits"),
            M("hash-cache", ".runlog-hash-cache", "symlink-secret"),
        ),
    ),
    # a run folder that is a FIFO; a stored file whose name is not UTF-8
    TreeSpec(
        "file-system",
        "file-system",
        False,
        "catalog",
        (M("fifo", "run-live"), M("bad-name", "run-b", "run-\udcff\udcfe|copy")),
    ),
    # the store's lock linked to a folder outside; the manifests folder a FIFO
    TreeSpec(
        "chunked-fs",
        "content-fs",
        False,
        "catalog",
        (M("symlink", ".runlog-content.lock", "outside/dir"), M("fifo", "manifests")),
    ),
    # compute files with names of 230 bytes and not UTF-8
    TreeSpec(
        "file-system",
        "content-fs",
        False,
        "catalog",
        (M("compute-name", LONG_NAME, "file"), M("compute-name", "data-\udcff.bin", "file")),
    ),
    TreeSpec(
        "chunked-fs",
        "file-system",
        False,
        "catalog",
        (M("compute-name", LONG_NAME, "file"), M("hash-cache", ".runlog-hash-cache", "fifo")),
    ),
]


def _with_examples(specs: list[TreeSpec]) -> Callable[[Any], Any]:
    def decorate(test: Any) -> Any:
        for spec in reversed(specs):
            test = example(spec=spec)(test)
        return test

    return decorate


@pytest.fixture(scope="module")
def fork_server() -> Iterator[ForkServer]:
    server = ForkServer()
    yield server
    server.close()


def check_tree(server: ForkServer, spec: TreeSpec) -> list[str]:
    """Build the tree ``spec`` describes, run every call on it, and say what went wrong. The
    writes go to run-a, run-live and a new run; run-b stays as it was written three days ago,
    so the gc at the end has an old run to delete."""
    base = Path(tempfile.mkdtemp(prefix="runlog-fuzz-"))
    try:
        tree = trees.build(spec, base)
        harness = Harness(server, tree)
        calls = log_folder_calls(tree) if spec.mutated == "logs" else catalog_calls(tree)
        harness.run_all(calls)
        return harness.failures
    finally:
        trees.remove_tree(base)


def _report(spec: TreeSpec, failures: list[str]) -> str:
    return f"{spec!r}\n" + "\n".join(f"- {failure}" for failure in failures)


@PROFILE
@given(spec=trees.tree_specs("logs"))
@_with_examples(LOG_FOLDER_EXAMPLES)
def test_a_hostile_log_folder_gives_typed_errors_and_harms_nothing(
    fork_server: ForkServer, spec: TreeSpec
) -> None:
    failures = check_tree(fork_server, spec)
    assert not failures, _report(spec, failures)


@PROFILE
@given(spec=trees.tree_specs("catalog"))
@_with_examples(CATALOG_EXAMPLES)
def test_a_hostile_catalog_gives_typed_errors_and_harms_nothing(
    fork_server: ForkServer, spec: TreeSpec
) -> None:
    failures = check_tree(fork_server, spec)
    assert not failures, _report(spec, failures)
