"""The postgres store beyond the store contract (tests/contract binds that): its password kept
secret everywhere, its schema versions, writes that touch only their own rows, and a store
carried to another process. On the private cluster of tests/postgres_server.py."""

from __future__ import annotations

import gc
import logging
import os
import pickle
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from runlog_store import create_store
from runlog_store.exceptions import (
    ConfigurationError,
    RunLogNotFoundError,
    RunLogStoreError,
    StorageError,
)
from runlog_store.models import JsonParameter
from runlog_store.stores import postgres as postgres_module
from runlog_store.stores import postgres_migrations
from runlog_store.stores.postgres import PostgresRunLogStore, SchemaVersionError

from ..postgres_server import PostgresServer


def _store(config: dict[str, Any], **changes: Any) -> PostgresRunLogStore:
    store = create_store("postgres", **{**config, **changes})
    assert isinstance(store, PostgresRunLogStore)
    return store


def _connect(config: dict[str, Any]) -> psycopg.Connection[Any]:
    keys = ("host", "port", "dbname", "user", "password")
    return psycopg.connect(autocommit=True, **{key: config[key] for key in keys})


def _everything_said(store: PostgresRunLogStore) -> str:
    return "\n".join(
        [
            repr(store),
            str(store),
            str(store.get_summary()),
            store.location(),
            store._location("r1", "StepLog-s.json"),
            str(store.model_dump()),
            store.model_dump_json(),
        ]
    )


# --- the password ----------------------------------------------------------------------------


def test_the_password_is_never_shown(postgres_config: dict[str, Any]) -> None:
    secret = postgres_config["password"]
    store = _store(postgres_config)
    store.create_run_log("r1")
    assert secret not in _everything_said(store)
    assert "**********" in repr(store)


def test_a_refused_setting_does_not_repeat_the_password(postgres_config: dict[str, Any]) -> None:
    secret = postgres_config["password"]
    with pytest.raises(ConfigurationError) as refused:
        _store(postgres_config, pool_size=0)
    assert refused.value.key == "pool_size"
    assert secret not in str(refused.value)
    with pytest.raises(ConfigurationError) as wrong_type:
        _store(postgres_config, password=["a", secret])
    assert wrong_type.value.key == "password"
    assert secret not in str(wrong_type.value)
    # Built without the registry, the model's own error leaves the input out as well.
    with pytest.raises(ValidationError) as direct:
        PostgresRunLogStore(password=secret, pool_size=0)
    assert secret not in str(direct.value) + repr(direct.value.errors())


def test_a_url_with_the_password_is_refused_without_repeating_it(
    postgres_server: PostgresServer, postgres_config: dict[str, Any]
) -> None:
    secret = postgres_server.password
    url = postgres_server.url(with_password=True)
    assert secret in url
    with pytest.raises(ConfigurationError) as refused:
        create_store("postgres", url=url, schema_name=postgres_config["schema_name"])
    assert refused.value.key == "url"
    assert secret not in str(refused.value)
    store = _store(postgres_config)
    with pytest.raises(ValidationError) as assigned:
        store.url = url
    assert secret not in str(assigned.value)


def test_a_url_and_the_password_apart_connect(
    postgres_server: PostgresServer, postgres_config: dict[str, Any]
) -> None:
    store = create_store(
        "postgres",
        url=postgres_server.url(),
        password=postgres_server.password,
        schema_name=postgres_config["schema_name"],
    )
    store.create_run_log("by-url")
    assert store.list_run_ids() == ["by-url"]
    assert store.location().startswith(
        f"postgresql://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}/"
    )


def test_a_refused_login_says_why_and_never_the_password(
    postgres_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-" + postgres_config["password"]
    store = _store(postgres_config, password=wrong, connect_timeout=2)
    with caplog.at_level(logging.DEBUG), pytest.raises(StorageError) as refused:
        store.create_run_log("r1")
    message = str(refused.value)
    assert "password authentication failed" in message
    assert postgres_config["schema_name"] in message  # where it was going
    assert wrong not in message + repr(refused.value.args) + caplog.text
    assert postgres_config["password"] not in message + caplog.text


# --- schema versions -----------------------------------------------------------------------


def test_tables_are_made_at_first_use_with_their_version(postgres_config: dict[str, Any]) -> None:
    schema = postgres_config["schema_name"]
    with _connect(postgres_config) as conn:
        assert conn.execute("SELECT to_regnamespace(%s)", [schema]).fetchone() == (None,)
    _store(postgres_config).create_run_log("r1")
    with _connect(postgres_config) as conn:
        versions = conn.execute(f"SELECT version FROM {schema}.schema_version").fetchall()
    assert [v for (v,) in versions] == [m.version for m in postgres_migrations.MIGRATIONS]


def test_stores_starting_together_migrate_once(postgres_config: dict[str, Any]) -> None:
    """Eight stores at their first call at once on an empty database: one makes the tables,
    the others wait for it (the advisory lock), none fails, every run is there."""
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def first_call(n: int) -> None:
        try:
            store = _store(postgres_config)
            start.wait()
            store.create_run_log(f"r{n}")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=first_call, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(_store(postgres_config).list_run_ids()) == sorted(f"r{n}" for n in range(8))
    schema = postgres_config["schema_name"]
    with _connect(postgres_config) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {schema}.schema_version").fetchone()
    assert rows == (len(postgres_migrations.MIGRATIONS),)


def test_a_newer_schema_is_a_typed_error_and_nothing_is_written(
    postgres_config: dict[str, Any],
) -> None:
    schema = postgres_config["schema_name"]
    _store(postgres_config).create_run_log("before")
    newer = postgres_migrations.LATEST + 1
    with _connect(postgres_config) as conn:
        conn.execute(
            f"INSERT INTO {schema}.schema_version (version, description) VALUES (%s, 'later')",
            [newer],
        )
    store = _store(postgres_config)  # a new process's store: it checks at its first call
    with pytest.raises(SchemaVersionError) as refused:
        store.create_run_log("after")
    error = refused.value
    assert isinstance(error, StorageError) and isinstance(error, RunLogStoreError)
    assert (error.found, error.known) == (newer, postgres_migrations.LATEST)
    assert f"schema version {newer}" in str(error) and "upgrade" in str(error)
    with pytest.raises(SchemaVersionError):
        store.get_run_log_by_id("before")
    with _connect(postgres_config) as conn:
        runs = conn.execute(f"SELECT run_id FROM {schema}.runs").fetchall()
    assert runs == [("before",)]


def test_an_older_schema_is_brought_forward(postgres_config: dict[str, Any]) -> None:
    """A database with the version table but no migration applied (made by a release that
    stopped before its first): the store applies every migration and works."""
    schema = postgres_config["schema_name"]
    with _connect(postgres_config) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(postgres_migrations.VERSION_TABLE.replace("{schema}", schema))
    store = _store(postgres_config)
    store.create_run_log("r1")
    assert store.get_run_log_by_id("r1").run_id == "r1"


# --- writes touch their own rows ---------------------------------------------------------------


def _row_versions(config: dict[str, Any]) -> dict[tuple[str, ...], str]:
    """Each row of the test's schema and its xmin (the transaction that last wrote it)."""
    schema = config["schema_name"]
    with _connect(config) as conn:
        runs = conn.execute(f"SELECT run_id, xmin::text FROM {schema}.runs").fetchall()
        nodes = conn.execute(
            f"SELECT run_id, kind, internal_name, xmin::text FROM {schema}.nodes"
        ).fetchall()
    found: dict[tuple[str, ...], str] = {(run_id,): xmin for run_id, xmin in runs}
    found.update({(run_id, kind, name): xmin for run_id, kind, name, xmin in nodes})
    return found


def test_a_step_write_rewrites_its_row_alone(postgres_config: dict[str, Any]) -> None:
    store = _store(postgres_config)
    store.create_run_log("r1")
    store.create_run_log("r2")
    for name in ("a", "b", "c"):
        store.add_step_log(store.create_step_log(name, name), "r1")
    before = _row_versions(postgres_config)
    step = store.create_step_log("b", "b")
    step.status = "SUCCESS"
    store.add_step_log(step, "r1")
    after = _row_versions(postgres_config)
    changed = {key for key in after if after[key] != before.get(key)}
    assert changed == {("r1", "step", "b")}
    assert list(store.get_run_log_by_id("r1", full=True).steps) == ["a", "b", "c"]


def test_a_parameter_change_rewrites_the_run_row_alone(postgres_config: dict[str, Any]) -> None:
    store = _store(postgres_config)
    store.create_run_log("r1")
    store.add_step_log(store.create_step_log("a", "a"), "r1")
    before = _row_versions(postgres_config)
    store.set_parameters("r1", {"x": JsonParameter(kind="json", value=1)})
    after = _row_versions(postgres_config)
    assert {key for key in after if after[key] != before[key]} == {("r1",)}


# --- another process ------------------------------------------------------------------------


def test_a_pickled_store_opens_its_own_pool(postgres_config: dict[str, Any]) -> None:
    """runnable pickles its services into Pool workers: the copy carries the settings, not the
    connections, and works."""
    store = _store(postgres_config)
    store.create_run_log("r1")
    copy = pickle.loads(pickle.dumps(store))
    assert isinstance(copy, PostgresRunLogStore)
    assert copy._migrated == set()
    copy.update_run_log_status("r1", "SUCCESS")
    assert store.get_run_log_by_id("r1").status == "SUCCESS"
    copy.close()
    store.delete_run("r1")
    with pytest.raises(RunLogNotFoundError):
        copy.get_run_log_by_id("r1")


def test_a_forked_child_leaves_the_parents_connections_alone(
    postgres_config: dict[str, Any],
) -> None:
    """A child forked while the parent's pool is open (runnable's Pool workers on Linux) opens
    its own, and its exit (its pools closed, its garbage collected) does not end the parent's
    sessions on the sockets both inherited."""
    store = _store(postgres_config)
    store.create_run_log("r1")
    with store.connection() as conn:
        backend = conn.info.backend_pid  # the parent's one pooled session (calls one at a time)
    pid = os.fork()
    if pid == 0:  # the child: any failure is its exit code
        code = 1
        try:
            store.set_parameters("r1", {"child": JsonParameter(kind="json", value=os.getpid())})
            postgres_module._close_pools()
            gc.collect()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with _connect(postgres_config) as conn:
        alive = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [backend])
        assert alive.fetchone() == (1,), "the child ended the parent's session"
    # The parent's pooled connection is still good: its next calls succeed on it.
    for n in range(3):
        store.set_parameters("r1", {f"parent{n}": JsonParameter(kind="json", value=n)})
    assert set(store.get_parameters("r1")) == {"child", "parent0", "parent1", "parent2"}


# --- reads that pick rows ------------------------------------------------------------------


def _odd_names_run(store: Any) -> None:
    """Root steps with dots in their names, a branch step with dots in its own name, and a
    map nested in a map: every case the choice of a run's root steps must get right."""
    store.create_run_log("r")
    for name in ("plain", "one.dot", "two..dots", "map"):
        step = store.create_step_log(name, name)
        if name == "map":
            step.step_type = "map"
        store.add_step_log(step, "r")
    store.add_branch_log(store.create_branch_log("map.x"), "r")
    for name in ("map.x.a.b", "map.x.inner"):
        store.add_step_log(store.create_step_log(name.rsplit(".", 1)[-1], name), "r")
    store.add_branch_log(store.create_branch_log("map.x.inner.y"), "r")
    store.add_step_log(store.create_step_log("deep", "map.x.inner.y.deep"), "r")
    store.set_parameters("r", {"p": JsonParameter(kind="json", value=1)}, "map.x.inner.y")


def test_reads_of_parts_of_a_run_equal_chunked_fs(
    postgres_config: dict[str, Any], tmp_path: Path
) -> None:
    """The postgres store's reads that fetch only some rows (a run without its branches, a
    branch, a step) give what chunked-fs gives after the same calls."""
    ours = _store(postgres_config)
    reference = create_store("chunked-fs", log_folder=str(tmp_path / "logs"), fsync=False)
    for store in (ours, reference):
        _odd_names_run(store)

    def reads(store: Any) -> list[Any]:
        return [
            store.get_run_log_by_id("r").model_dump(),
            store.get_run_log_by_id("r", full=True).model_dump(),
            store.get_branch_log("map.x", "r").model_dump(),
            store.get_branch_log("map.x.inner.y", "r").model_dump(),
            store.get_step_log("map.x.a.b", "r").model_dump(),
            store.get_parameters("r", "map.x.inner.y"),
        ]

    assert reads(ours) == reads(reference)
    assert list(ours.get_run_log_by_id("r").steps) == ["plain", "one.dot", "two..dots", "map"]


def test_a_pool_with_every_connection_busy_says_so(postgres_config: dict[str, Any]) -> None:
    store = _store(postgres_config, pool_size=1, connect_timeout=1)
    store.create_run_log("r1")
    with store.connection(), pytest.raises(StorageError) as busy:
        store.get_run_log_by_id("r1")
    assert "all 1 busy" in str(busy.value) and "pool_size" in str(busy.value)
    assert store.get_run_log_by_id("r1").run_id == "r1"  # free again
