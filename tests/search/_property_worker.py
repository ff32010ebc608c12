"""The other processes of the search property test (tests/search/test_search_property.py).

Each worker is a process of its own (multiprocessing, spawn) that imports the library once and
then serves requests from the test over a pipe until it is told to stop or is SIGKILLed: a
writer (one of our stores, or one of runnable 0.50's own stores, writing runs the test planned),
a searcher (``store.search_runs`` walked page by page, as another process sees the store) or a
locker (holds an exclusive SQLite transaction on the index file for a while).

Plans are plain data made by the test's seeded generator, so a worker does only what the test
decided and a failing sequence replays from its seed.
"""

from __future__ import annotations

import os
import sqlite3
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from runlog_store.callbacks import Callback, Unit

from ._property_model import canonical

# A request is a dict with an "op"; every answer is ("ok", value) or ("error", text).
Spec = dict[str, Any]
Plan = dict[str, Any]


def make_store(spec: Spec) -> Any:
    """The store a spec names: ``{"kind": "ours", "type": ..., "config": {...}}``, or runnable
    0.50's own file-system / chunked-fs store on a log folder (``runnable-fs``,
    ``runnable-chunked``)."""
    kind = spec["kind"]
    if kind == "ours":
        from runlog_store import create_store

        return create_store(spec["type"], **spec["config"])
    if kind == "runnable-fs":
        from extensions.run_log_store.file_system import FileSystemRunLogstore

        return FileSystemRunLogstore(log_folder=spec["log_folder"])
    if kind == "runnable-chunked":
        from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore

        return ChunkedFileSystemRunLogStore(log_folder=spec["log_folder"])
    raise ValueError(f"no store of kind {kind!r}")


class _Models:
    """The model classes of the store's own package: runnable's stores are handed runnable's
    models, ours our own (both accept the other's, but each writes as its users do)."""

    def __init__(self, spec: Spec) -> None:
        if spec["kind"] == "ours":
            import runlog_store as models
        else:
            import runnable.datastore as models  # type: ignore[no-redef]
        self.json = models.JsonParameter
        self.metric = models.MetricParameter
        self.object = models.ObjectParameter
        self.attempt = models.StepAttempt
        self.code = models.CodeIdentity
        self.branch = models.BranchLog


def _parameters(models: _Models, plan: Plan) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in plan.get("params", {}).items():
        found[name] = models.json(kind="json", value=_from_wire(value))
    for name, value in plan.get("objects", {}).items():
        found[name] = models.object(kind="object", value=value)
    for name, value in plan.get("metrics", {}).items():
        found[name] = models.metric(kind="metric", value=_from_wire(value))
    return found


def _from_wire(value: Any) -> Any:
    """Non-finite floats travel as {"float": "nan"} (the pipe carries JSON-safe plans)."""
    if isinstance(value, dict) and set(value) == {"float"}:
        return float(value["float"])
    if isinstance(value, list):
        return [_from_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_wire(v) for k, v in value.items()}
    return value


def _add_step(store: Any, models: _Models, run_id: str, step: Plan) -> None:
    log = store.create_step_log(step["name"], step["internal_name"])
    log.step_type = step.get("step_type", "task")
    log.status = step["status"]
    for number, attempt in enumerate(step.get("attempts", []), start=1):
        identities = []
        if attempt.get("commit"):
            identities.append(
                models.code(
                    code_identifier=attempt["commit"],
                    code_identifier_type="git",
                    code_identifier_dependable=True,
                )
            )
        log.attempts.append(
            models.attempt(
                attempt_number=number,
                status=attempt["status"],
                start_time=attempt["start"],
                end_time=attempt["end"],
                code_identities=identities,
            )
        )
    store.add_step_log(log, run_id)
    for branch in step.get("branches", []):
        store.add_branch_log(store.create_branch_log(branch["internal_name"]), run_id)
        for inner in branch.get("steps", []):
            _add_step(store, models, run_id, inner)
        done = store.get_branch_log(branch["internal_name"], run_id)
        done.status = branch["status"]
        store.add_branch_log(done, run_id)


def apply(store: Any, models: _Models, plan: Plan) -> None:
    """Carry out one write the test planned."""
    op = plan["op"]
    run_id = plan["run_id"]
    if op == "create":
        store.create_run_log(run_id, dag_hash=plan["dag_hash"], tag=plan["tag"], status="CREATED")
        parameters = _parameters(models, plan)
        if parameters:
            store.set_parameters(run_id, parameters)
        for step in plan.get("steps", []):
            _add_step(store, models, run_id, step)
        if plan.get("status", "CREATED") != "CREATED":
            store.update_run_log_status(run_id, plan["status"])
    elif op == "params":
        store.set_parameters(run_id, _parameters(models, plan))
    elif op == "step":
        _add_step(store, models, run_id, plan["step"])
    elif op == "status":
        store.update_run_log_status(run_id, plan["status"])
    elif op == "delete":
        store.delete_run(run_id)
    else:
        raise ValueError(f"no write {op!r}")


class _Indexing(Callback):
    """Tells the test when a search starts indexing runs, so it can kill the process then."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def begin(self, description: str, total: int, unit: Unit = "bytes") -> None:
        if description.startswith("indexing"):
            self.conn.send(("indexing", total))


def search(store: Any, request: Plan, conn: Connection | None = None) -> list[str]:
    """Every summary ``search_runs`` answers (pages walked until no token), as canonical JSON.
    With ``conn`` (and ``report_indexing`` in the request), the start of indexing is told."""
    callback = _Indexing(conn) if conn is not None and request.get("report_indexing") else None
    found: list[str] = []
    token: str | None = None
    while True:
        page = store.search_runs(
            request["filter"],
            request["order"],
            max_results=request["page_size"],
            page_token=token,
            **({"callback": callback} if callback is not None else {}),
        )
        if len(page.runs) > request["page_size"]:
            raise AssertionError(f"a page of {len(page.runs)} runs for {request['page_size']}")
        found.extend(canonical(run) for run in page.runs)
        token = page.next_page_token
        if token is None:
            return found


def hold_lock(path: str, seconds: float, conn: Connection) -> None:
    """Hold an exclusive write transaction on the SQLite file at ``path`` for ``seconds``."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        conn.send(("ok", "locked"))
        time.sleep(seconds)
        db.execute("ROLLBACK")
    finally:
        db.close()


def serve(conn: Connection, spec: Spec, env: dict[str, str]) -> None:
    """The worker's loop: one request at a time, until ``{"op": "stop"}`` or a SIGKILL."""
    os.environ.update(env)
    store = make_store(spec) if spec.get("kind") != "none" else None
    models = _Models(spec) if store is not None else None
    conn.send(("ok", "ready"))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        op = request["op"]
        if op == "stop":
            conn.send(("ok", None))
            return
        try:
            if op == "search":
                conn.send(("ok", "started"))
                answer: Any = search(store, request, conn)
            elif op == "lock":
                hold_lock(request["path"], request["seconds"], conn)
                answer = "released"
            else:
                assert models is not None
                conn.send(("ok", "started"))
                apply(store, models, request)
                answer = None
            conn.send(("ok", answer))
        except Exception:
            conn.send(("error", traceback.format_exc(limit=8)))
