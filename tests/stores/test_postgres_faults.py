"""The postgres store when its server dies: eight writer processes on one run, the server
SIGKILLed under them and started again (crash recovery from its WAL). Every write a writer had
acknowledged is in the run afterwards, and stores that were connected before the crash work
again without being rebuilt. On a cluster of its own (tests/postgres_server.py), so the crash
disturbs no other test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runlog_store import create_store
from runlog_store.exceptions import StorageError
from runlog_store.models import JsonParameter
from runlog_store.testing.store.processes import (
    acknowledged_writes,
    missing_writes,
    prepare_run,
    start_writers,
)

from ..postgres_server import PostgresServer, private_server

WRITERS = 8
ACKS_BEFORE_CRASH = 12  # each writer's acknowledged writes when the server is killed
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def crash_server() -> Iterator[PostgresServer]:
    with private_server() as server:
        yield server


def _config(server: PostgresServer) -> dict[str, Any]:
    return {
        "type": "postgres",
        "host": server.host,
        "port": server.port,
        "dbname": server.dbname,
        "user": server.user,
        "password": server.password,
        "schema_name": f"t_{uuid.uuid4().hex[:12]}",
        "connect_timeout": 2,  # how long a call waits for the dead server
    }


def test_a_server_killed_under_eight_writers_loses_no_acknowledged_write(
    crash_server: PostgresServer,
) -> None:
    config = _config(crash_server)
    keys = {k: v for k, v in config.items() if k != "type"}
    store = create_store("postgres", **keys)
    prepare_run(store, "crash")
    workers = [f"w{n}" for n in range(WRITERS)]
    writers = start_writers(config, "crash", workers, 0, None, TIMEOUT)
    try:
        for writer in writers:
            writer.go()
        for writer in writers:
            writer.read_acks(ACKS_BEFORE_CRASH, TIMEOUT)
        crash_server.kill()
        # Every writer's next call fails (its session is gone, no server to reconnect to): it
        # exits, and what it printed before is all it acknowledged.
        for writer in writers:
            writer.drain(TIMEOUT)
            assert writer.process.wait(TIMEOUT) != 0
        acknowledged = {
            w: acknowledged_writes(x.acks) for w, x in zip(workers, writers, strict=True)
        }
    finally:
        for writer in writers:
            writer.close()
    with pytest.raises(StorageError) as down:
        store.get_run_log_by_id("crash", full=True)
    # Why, as the server's address answers (nothing listens), never the password.
    assert "refused" in str(down.value) or "No such file" in str(down.value), str(down.value)
    assert crash_server.password not in str(down.value)

    crash_server.start()
    # The store connected before the crash works again, its dead connections replaced.
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            store.set_parameters("crash", {"after": JsonParameter(kind="json", value=1)})
            break
        except StorageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    lost = {w: missing_writes(store, "crash", w, acknowledged[w]) for w in workers}
    assert lost == {w: [] for w in workers}
    assert sum(len(a["B"]) for a in acknowledged.values()) >= WRITERS * 2
    run = store.get_run_log_by_id("crash", full=True)
    assert run.parameters["after"].value == 1
    assert run.run_id == "crash"
