"""What someone else who can write into a shared log folder, bucket or database does to it, and
a child process to watch a read that might hang or eat memory."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runlog_store import BaseRunLogStore
from runlog_store.stores.chunked_fs import ChunkedFileSystemRunLogStore
from runlog_store.stores.chunked_minio import ChunkedMinioRunLogStore
from runlog_store.stores.file_system import FileSystemRunLogStore
from runlog_store.stores.minio import MinioRunLogStore
from runlog_store.stores.postgres import PostgresRunLogStore

ROOT = Path(__file__).resolve().parents[2]


def document_where(store: BaseRunLogStore, run_id: str) -> str:
    """Where the run-level document of a run is: a path, or an object's key."""
    if isinstance(store, FileSystemRunLogStore):
        return str(Path(store.log_folder) / f"{run_id}.json")
    if isinstance(store, ChunkedFileSystemRunLogStore):
        return str(Path(store.log_folder) / run_id / "RunLog.json")
    if isinstance(store, MinioRunLogStore):
        return store.storage().key(f"{run_id}.json")
    if isinstance(store, ChunkedMinioRunLogStore):
        return store.storage().key(run_id, "RunLog")
    if isinstance(store, PostgresRunLogStore):
        return store._location(run_id)  # the run's row of the runs table
    raise TypeError(f"no stored document in a {type(store).__name__}")


def run_document(store: BaseRunLogStore, run_id: str) -> tuple[str, bytes]:
    """Where the run-level document of a run is, and its bytes (the run folded first, so no
    journal record stands in front of it)."""
    if isinstance(store, ChunkedFileSystemRunLogStore | ChunkedMinioRunLogStore):
        store.fold(run_id)
    where = document_where(store, run_id)
    if isinstance(store, PostgresRunLogStore):
        with store.connection() as conn:
            row = conn.execute(
                f'SELECT document FROM "{store.schema_name}".runs WHERE run_id = %s', [run_id]
            ).fetchone()
        assert row is not None, where
        return where, bytes(row[0])
    if isinstance(store, MinioRunLogStore | ChunkedMinioRunLogStore):
        found = store.storage().get(where)
        assert found is not None, where
        return where, found[0]
    return where, Path(where).read_bytes()


def replace_run_document(store: BaseRunLogStore, run_id: str, data: bytes) -> None:
    """Write ``data`` where the run-level document of ``run_id`` is, as another user would."""
    where, _ = run_document(store, run_id)
    if isinstance(store, PostgresRunLogStore):
        # Another user of the database: an UPDATE of the row, behind the store's back.
        with store.connection() as conn:
            conn.execute(
                f'UPDATE "{store.schema_name}".runs SET document = %s WHERE run_id = %s',
                [data, run_id],
            )
    elif isinstance(store, MinioRunLogStore | ChunkedMinioRunLogStore):
        store.storage().put(where, data)
        store.storage().delete(store.storage().key(run_id, ".merged.json"))
    else:
        Path(where).write_bytes(data)


def edit_run_document(
    store: BaseRunLogStore, run_id: str, change: Callable[[dict[str, Any]], None]
) -> None:
    """Change the run-level document of a run as a JSON object."""
    _, data = run_document(store, run_id)
    document = json.loads(data)
    change(document)
    replace_run_document(store, run_id, json.dumps(document).encode())


def run_child(code: str, *, timeout: float = 20.0, memory_mb: int = 1500) -> dict[str, Any]:
    """Run ``code`` in a child interpreter whose address space is capped, and give back what it
    printed last (JSON). A read that hangs is killed at ``timeout`` and reported as
    ``{"outcome": "hung"}``; one killed for memory as ``{"outcome": "died", ...}``."""

    def limit() -> None:
        size = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit,
            env=env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return {"outcome": "hung"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"outcome": "died", "code": done.returncode, "stderr": done.stderr[-2000:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


CHILD_READ = """
import json, sys
from runlog_store import create_store
from runlog_store.exceptions import RunLogStoreError
store = create_store({type!r}, log_folder={folder!r}, fsync=False)
try:
    {call}
    print(json.dumps({{"outcome": "read"}}))
except RunLogStoreError as exc:
    print(json.dumps({{"outcome": "error", "type": type(exc).__name__, "message": str(exc),
                      "path": exc.path, "run_id": exc.run_id}}))
"""


def read_in_child(type_name: str, folder: Path, call: str, **limits: Any) -> dict[str, Any]:
    """``call`` (Python using ``store``) on a store of ``type_name`` in a child process: what
    it gave, a typed error (type, message, path, run id), or that it hung or died."""
    return run_child(CHILD_READ.format(type=type_name, folder=str(folder), call=call), **limits)
