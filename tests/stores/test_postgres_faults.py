"""The postgres store when its server fails.

- Eight writer processes on one run while the server is restarted (``pg_ctl stop -m fast``,
  then started: every session ended by the server) or SIGKILLed and started again (crash
  recovery from its WAL): every write a writer had acknowledged is in the run afterwards, and
  the writers carry on by themselves once the server is back (their calls retry a lost
  connection, with backoff, up to ``retry_timeout``). On a cluster of this module's own
  (tests/postgres_server.py), so the faults disturb no other test.
- A connection lost after the server committed a write and before the answer came back (a
  proxy that cuts it at that moment): a write that may be repeated is run again; creating and
  deleting a run, which may not, find out what the lost attempt did.
- Servers that cannot serve the call: unreachable, a wrong password, a missing database, a
  statement timeout, 64 processes for a role allowed 8 connections. Each is a typed error
  naming the server, the database and the store call, and the password is nowhere: not in
  the error, its repr, its attributes, its cause chain, its traceback nor the logs.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import secrets
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from runlog_store import create_store
from runlog_store.exceptions import RunLogExistsError, RunLogNotFoundError, StorageError
from runlog_store.models import JsonParameter
from runlog_store.stores.postgres import (
    PostgresDatabaseNotFoundError,
    PostgresError,
    PostgresLoginError,
    PostgresRunLogStore,
    PostgresTimeoutError,
    PostgresUnavailableError,
)
from runlog_store.testing.store.processes import (
    acknowledged_writes,
    missing_writes,
    prepare_run,
    start_writers,
)

from ..minio_server import free_port
from ..postgres_server import PostgresServer, private_server

WRITERS = 8
ACKS_BEFORE_FAULT = 12  # each writer's acknowledged writes when the server goes
ACKS_AFTER_FAULT = 30  # and the writes each must acknowledge once it is back
TIMEOUT = 90.0


@pytest.fixture(scope="module")
def crash_server() -> Iterator[PostgresServer]:
    with private_server() as server:
        yield server


def _config(server: PostgresServer, **changes: Any) -> dict[str, Any]:
    return {
        "type": "postgres",
        "host": server.host,
        "port": server.port,
        "dbname": server.dbname,
        "user": server.user,
        "password": server.password,
        "schema_name": f"t_{uuid.uuid4().hex[:12]}",
        "connect_timeout": 2,
        **changes,
    }


def _store(config: dict[str, Any], **changes: Any) -> PostgresRunLogStore:
    keys = {k: v for k, v in {**config, **changes}.items() if k != "type"}
    store = create_store("postgres", **keys)
    assert isinstance(store, PostgresRunLogStore)
    return store


def _everything_said(error: BaseException) -> str:
    """The error as anyone could see it: its text, repr and attributes, those of every error
    in its cause chain, and its formatted traceback."""
    said = ["".join(traceback.format_exception(error))]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        said += [str(current), repr(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return "\n".join(said)


# --- a restart and a crash under eight writers ---------------------------------------------------


@pytest.mark.parametrize("fault", ["restart", "crash"])
def test_writers_carry_on_through_a_restart_or_a_crash_and_lose_nothing(
    crash_server: PostgresServer, fault: str
) -> None:
    config = _config(crash_server)
    store = _store(config)
    prepare_run(store, "run")
    workers = [f"w{n}" for n in range(WRITERS)]
    writers = start_writers(config, "run", workers, 0, None, TIMEOUT)
    try:
        for writer in writers:
            writer.go()
        for writer in writers:
            writer.read_acks(ACKS_BEFORE_FAULT, TIMEOUT)
        if fault == "restart":
            crash_server.stop()  # pg_ctl stop -m fast: every session ended, then started
        else:
            crash_server.kill()  # SIGKILL of the postmaster: crash recovery at the next start
            time.sleep(0.5)  # down for a while: the writers' calls wait and retry
        crash_server.start()
        back = [len(writer.acks) for writer in writers]
        for writer, seen in zip(writers, back, strict=True):
            writer.read_acks(seen + ACKS_AFTER_FAULT, TIMEOUT)  # carrying on by itself
        for writer in writers:
            assert writer.process.poll() is None, writer.failure("exited")
    finally:
        for writer in writers:
            writer.close()  # SIGKILL: what each printed is all it acknowledged
    acknowledged = {w: acknowledged_writes(x.acks) for w, x in zip(workers, writers, strict=True)}
    lost = {w: missing_writes(store, "run", w, acknowledged[w]) for w in workers}
    assert lost == {w: [] for w in workers}
    # The store object connected before the fault works on, its dead connections replaced.
    store.set_parameters("run", {"after": JsonParameter(kind="json", value=1)})
    run = store.get_run_log_by_id("run", full=True)
    assert run.parameters["after"].value == 1


def test_a_call_while_the_server_is_down_fails_typed_after_its_retry_timeout(
    crash_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(crash_server, retry_timeout=1.5, connect_timeout=1)
    store = _store(config)
    store.create_run_log("r1")
    crash_server.kill()
    try:
        started = time.monotonic()
        with caplog.at_level(logging.DEBUG), pytest.raises(PostgresUnavailableError) as down:
            store.get_run_log_by_id("r1", full=True)
        waited = time.monotonic() - started
    finally:
        crash_server.start()
    error = down.value
    message = str(error)
    assert 1.5 <= waited < 1.5 + 2 * 1 + 2, waited  # the budget, and a connect_timeout or two
    assert "Connection refused" in message, message
    assert f"{crash_server.host}:{crash_server.port}/{crash_server.dbname}" in message
    assert "get_run_log_by_id of run 'r1'" in message and error.operation == "get_run_log_by_id"
    assert not error.in_doubt  # a read
    assert crash_server.password not in _everything_said(error) + caplog.text
    assert store.get_run_log_by_id("r1").run_id == "r1"  # back


# --- a connection lost while a write is committed -----------------------------------------------


class CuttingProxy:
    """A TCP proxy to the server that, once armed with a marker, lets the next client message
    holding it through, and cuts both connections when the server answers: the server has
    run (and committed) the statement, the client never hears it did."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.marker: bytes | None = None
        self.cuts = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes) -> None:
        with self._lock:
            self.marker = marker

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            state = {"sent": False}
            threading.Thread(
                target=self._pump, args=(client, server, state, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, state, False), daemon=True
            ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, state: dict[str, bool], up: bool
    ) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if up and self.marker is not None and self.marker in data:
                        self.marker = None
                        state["sent"] = True
                    elif not up and state["sent"]:
                        self.cuts += 1
                        # shutdown, not close alone: it ends the other pump's recv and sends
                        # the client its end of stream.
                        for end in (source, sink):
                            end.shutdown(socket.SHUT_RDWR)
                            end.close()
                        return
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(crash_server: PostgresServer) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(crash_server.port)
    yield proxy
    proxy.close()


def test_a_write_whose_answer_is_lost_is_stored_once(
    crash_server: PostgresServer, proxy: CuttingProxy
) -> None:
    store = _store(_config(crash_server, port=proxy.port))
    reference = _store(_config(crash_server, schema_name=store.schema_name))
    # Creating a run: the run is there, and the call says it created it (its second attempt
    # would find the row and say "exists"; it asks what the first did instead).
    proxy.arm(b"r-created")
    store.create_run_log("r-created")
    assert proxy.cuts == 1
    assert reference.get_run_log_by_id("r-created").run_id == "r-created"
    with pytest.raises(RunLogExistsError):
        store.create_run_log("r-created")  # another create of it is refused all the same
    # A step stored: run again, the same row (its place among its siblings kept).
    store.add_step_log(store.create_step_log("a", "a"), "r-created")
    proxy.arm(b'"b"')
    store.add_step_log(store.create_step_log("b", "b"), "r-created")
    store.add_step_log(store.create_step_log("c", "c"), "r-created")
    assert proxy.cuts == 2
    assert list(reference.get_run_log_by_id("r-created").steps) == ["a", "b", "c"]
    # A parameter merged: run again, the same keys to the same values.
    proxy.arm(b"merged-key")
    store.set_parameters("r-created", {"merged-key": JsonParameter(kind="json", value=7)})
    assert proxy.cuts == 3
    assert reference.get_parameters("r-created")["merged-key"].value == 7
    # Deleting a run (BEGIN, DELETE, COMMIT): the COMMIT's answer lost; the run is gone, and
    # the call says it deleted it (its second attempt would find no run).
    proxy.arm(b"COMMIT")
    store.delete_run("r-created")
    assert proxy.cuts == 4
    with pytest.raises(RunLogNotFoundError):
        reference.get_run_log_by_id("r-created")


# --- servers that cannot serve the call: typed errors, the password nowhere ---------------------


def _fails(store: PostgresRunLogStore, caplog: pytest.LogCaptureFixture) -> PostgresError:
    with caplog.at_level(logging.DEBUG), pytest.raises(PostgresError) as failed:
        store.create_run_log("r1")
    error = failed.value
    assert isinstance(error, StorageError)
    assert error.operation == "create_run_log"
    assert "create_run_log of run 'r1'" in str(error)
    return error


def test_an_unreachable_server_is_a_typed_error_after_the_retries(
    postgres_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    store = _store(postgres_config, port=port, retry_timeout=0.5, connect_timeout=1)
    error = _fails(store, caplog)
    assert isinstance(error, PostgresUnavailableError)
    assert f"{postgres_config['host']}:{port}/{postgres_config['dbname']}" in str(error)
    assert "Connection refused" in str(error) and "retry_timeout 0.5s" in str(error)
    assert postgres_config["password"] not in _everything_said(error) + caplog.text


def test_a_wrong_password_is_a_typed_error_at_once(
    postgres_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    store = _store(postgres_config, password=wrong, retry_timeout=30)
    started = time.monotonic()
    error = _fails(store, caplog)
    assert time.monotonic() - started < 10, "a refused login is not retried"
    assert isinstance(error, PostgresLoginError)
    assert "password authentication failed" in str(error)
    where = f"{postgres_config['host']}:{postgres_config['port']}/{postgres_config['dbname']}"
    assert where in str(error)
    said = _everything_said(error) + caplog.text
    assert wrong not in said and postgres_config["password"] not in said


def test_a_missing_database_is_a_typed_error_at_once(
    postgres_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(postgres_config, dbname="no_such_database", retry_timeout=30)
    error = _fails(store, caplog)
    assert isinstance(error, PostgresDatabaseNotFoundError)
    assert 'database "no_such_database" does not exist' in str(error)
    assert "/no_such_database/" in str(error)
    assert postgres_config["password"] not in _everything_said(error) + caplog.text


def test_a_statement_timeout_is_a_typed_error_and_stores_nothing(
    postgres_server: PostgresServer,
    postgres_config: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server's statement_timeout (here from libpq's options in the URL) cancels a write
    that waits on a row another session holds."""
    schema = postgres_config["schema_name"]
    store = _store(
        postgres_config,
        url=f"postgresql://{postgres_server.host}/?options=-c%20statement_timeout%3D300",
    )
    store.create_run_log("r1")
    keys = ("host", "port", "dbname", "user", "password")
    with psycopg.connect(**{k: postgres_config[k] for k in keys}) as holder:
        holder.execute(f"SELECT 1 FROM {schema}.runs WHERE run_id = 'r1' FOR UPDATE")
        with caplog.at_level(logging.DEBUG), pytest.raises(PostgresTimeoutError) as slow:
            store.set_parameters("r1", {"x": JsonParameter(kind="json", value=1)})
        holder.rollback()
    error = slow.value
    assert "statement timeout" in str(error) and error.sqlstate == "57014"
    assert "set_parameters of run 'r1'" in str(error)
    assert f"/{postgres_config['dbname']}/{schema}" in str(error)
    assert postgres_config["password"] not in _everything_said(error) + caplog.text
    assert store.get_parameters("r1") == {}
    store.set_parameters("r1", {"x": JsonParameter(kind="json", value=1)})  # free again
    assert store.get_parameters("r1")["x"].value == 1


ROLE_LIMIT = 8
PROCESSES = 64


def _connect_and_hold(config: dict[str, Any], n: int, results: Any, release: Any) -> None:
    """A process's first call; its outcome reported; its pool (and connection) kept open
    until the test releases it."""
    store = _store(config)
    try:
        store.create_run_log(f"r{n}")
        results.put(("ok", n, "", ""))
    except Exception as exc:
        results.put((type(exc).__name__, n, str(exc), _everything_said(exc)))
    release.wait(60)


def test_sixty_four_processes_beyond_the_servers_connections_get_typed_errors(
    postgres_server: PostgresServer, postgres_config: dict[str, Any]
) -> None:
    """64 processes for a role the server allows 8 connections: those the server turns away
    retry until their retry_timeout, then fail naming the server, the database and the call;
    the others work."""
    role, password = f"limited_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(18)
    postgres_server.sql(
        f"CREATE ROLE {role} LOGIN PASSWORD '{password}' CONNECTION LIMIT {ROLE_LIMIT}; "
        f"GRANT CREATE ON DATABASE {postgres_server.dbname} TO {role}"
    )
    config = {**postgres_config, "user": role, "password": password, "retry_timeout": 2.0}
    _store(config).create_run_log("first")  # the tables, made before the crowd comes
    context = multiprocessing.get_context("fork")
    results, release = context.Queue(), context.Event()
    processes = [
        context.Process(target=_connect_and_hold, args=(config, n, results, release))
        for n in range(PROCESSES)
    ]
    try:
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
    finally:
        release.set()
        for process in processes:
            process.join(30)
    worked = [n for kind, n, _, _ in outcomes if kind == "ok"]
    failed = [(kind, message, said) for kind, _, message, said in outcomes if kind != "ok"]
    assert 1 <= len(worked) <= ROLE_LIMIT
    assert len(worked) + len(failed) == PROCESSES
    for kind, message, said in failed:
        assert kind == "PostgresUnavailableError", message
        assert "too many connections" in message, message
        where = f"{role}@{postgres_server.host}:{postgres_server.port}/{postgres_server.dbname}/"
        assert where in message and "create_run_log of run" in message, message
        assert password not in said
    # Once the crowd is gone, a process of that role works again.
    assert _store(config).get_run_log_by_id("first").run_id == "first"
