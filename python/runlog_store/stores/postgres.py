"""``postgres``: runs as rows of a PostgreSQL database, for many writers on many machines.

A run is a row of ``runs`` (its fields: status, parameters, run config, job...; everything but
its steps, as JSON) and a row of ``nodes`` per step (without its branches) and per branch
(without its steps), in the schema ``schema_name`` (tables: ``postgres_migrations``). Every
store call is one short transaction on the rows it touches, turned from the call by the chunked
stores' machinery (:class:`~runlog_store.stores.chunked.Change`): a step or a branch stored is
an upsert of its row; a status, job or run-field change locks the run's row alone and patches
its JSON (the Rust core's ``apply_patch``), a parameter or run config change merging key by
key. No call reads or rewrites a whole run, and writers anywhere lose no update: row locks
serialise the few that touch the same row.

A full read is one statement (one snapshot: the run's row, its nodes' rows) merged by the Rust
core into runnable's run log JSON, the merge and sibling order every chunked store has; an ended
run's merge is kept in its row and read while a stamp of its rows matches (``_ended``).

psycopg 3 and its pool are imported here only: the package itself never loads them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import re
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, TypeVar
from urllib.parse import urlsplit

import psycopg
import psycopg.errors
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import AliasChoices, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from runlog_store import _core
from runlog_store.callbacks import NO_PROGRESS, Callback
from runlog_store.exceptions import (
    BranchLogNotFoundError,
    ChunkNotFoundError,
    ConfigurationError,
    RunLogExistsError,
    RunLogNotFoundError,
    RunLogStoreError,
    StorageError,
)
from runlog_store.stores import postgres_migrations as migrations
from runlog_store.stores import postgres_search
from runlog_store.stores.chunked import (
    MAX_REMEMBERED,
    Change,
    ChunkedRunLogStore,
)

if TYPE_CHECKING:
    from psycopg import Connection, Cursor

    from runlog_store.ops.runs import RunSummary
    from runlog_store.search.paging import RunPage

_T = TypeVar("_T")

SCHEMA_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
PASSWORD_IN_URL = (
    "the url must not carry the password (it would be shown wherever the url is): "
    "give it as the password setting"
)
# A transaction that lost a deadlock (two calls upserting the same rows in another order) or a
# serialization conflict is run again, at most this many times.
TRANSACTION_ATTEMPTS = 20
NodeKind = Literal["step", "branch"]
# The stamp of the rows a run's merge is made from: its document's digest and the version of
# each of its step and branch rows (the transaction that wrote it: a row written again, or one
# added or removed, changes it), in one order. Recomputed by a read, it is equal while no row
# changed; a name is preceded by its length, so no two sets of rows give the same text.
_ROWS_STAMP = (
    "md5(md5(r.document) || ':' || coalesce((SELECT string_agg(n.kind || "
    "length(n.internal_name) || ':' || n.internal_name || ':' || n.xmin::text, ',' "
    'ORDER BY n.kind, n.internal_name COLLATE "C") '
    "FROM {schema}.nodes n WHERE n.run_id = r.run_id), ''))"
)


# The connection pools of this process, by connection settings: store objects of the same
# settings (a store per test, a runnable service rebuilt) share one, and all are closed at exit.
_PoolKey = tuple[str, "str | None", int, float]
_POOLS: dict[_PoolKey, ConnectionPool[Any]] = {}
_POOLS_LOCK = threading.Lock()
# The parent's pools, inherited by a forked child: never used there, nor closed, nor freed
# (closing one would end the parent's sessions on the sockets both processes share).
_INHERITED: list[ConnectionPool[Any]] = []


def _shared_pool(key: _PoolKey, new: Callable[[], ConnectionPool[Any]]) -> ConnectionPool[Any]:
    pool = _POOLS.get(key)
    if pool is not None:
        return pool
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = new()
        return pool


def _check_idle_connection(conn: Connection[Any]) -> None:
    """The pool's check of a connection it hands out, without a round trip (a query per
    checkout would double the cost of a one-statement call): an idle session's socket has
    nothing to read unless the server ended it (a shutdown, a restart, a crash: a termination
    notice or the end of the stream), and only then is the server asked. A connection the
    server drops after this check fails the call, which the store's retry covers."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


def _forget_pools_after_fork() -> None:
    global _POOLS_LOCK
    _INHERITED.extend(_POOLS.values())
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()  # it may have been held by a thread the child has not


os.register_at_fork(after_in_child=_forget_pools_after_fork)


@atexit.register
def _close_pools() -> None:
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        with contextlib.suppress(Exception):
            pool.close(timeout=1.0)


class SchemaVersionError(StorageError):
    """The database's tables are of a newer schema than this release of the package knows:
    written by a newer release, they are neither read nor written (upgrade the package)."""

    def __init__(self, message: str, *, found: int, known: int, path: str = "") -> None:
        super().__init__(message, path=path)
        self.found = found
        self.known = known


class PostgresError(StorageError):
    """A call to the PostgreSQL server failed. The message names the server, the database
    and schema (``location``), the store call (``operation``) and the server's reason, never
    the password; ``sqlstate`` is the server's error code when it gave one."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        run_id: str = "",
        operation: str = "",
        sqlstate: str = "",
    ) -> None:
        super().__init__(message, path=path, run_id=run_id)
        self.operation = operation
        self.sqlstate = sqlstate


class PostgresUnavailableError(PostgresError):
    """The server could not be reached, or kept dropping the connection (down, restarting,
    refusing connections: too many clients), for longer than ``retry_timeout``.
    ``in_doubt``: the connection was lost while the call's write was being committed, so it
    may have been stored or not (every write but creating and deleting a run may be repeated
    safely)."""

    def __init__(self, message: str, *, in_doubt: bool = False, **where: Any) -> None:
        super().__init__(message, **where)
        self.in_doubt = in_doubt


class PostgresLoginError(PostgresError):
    """The server refused the login (a wrong password, an unknown user, a host not allowed):
    not retried."""


class PostgresDatabaseNotFoundError(PostgresError):
    """The database named in the settings does not exist on the server: not retried."""


class PostgresTimeoutError(PostgresError):
    """A statement ran longer than the server's ``statement_timeout`` (or waited longer than
    its ``lock_timeout``) and was cancelled: nothing of it was stored."""


class PostgresPoolExhaustedError(PostgresError):
    """Every connection of this process's pool stayed busy for ``connect_timeout``."""


# SQLSTATEs of a server that went away or cannot take the session now: a fast shutdown or a
# crash ended it (57P01, 57P02), it is starting or stopping (57P03), it has no connection slot
# (53300), or the connection broke (class 08).
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# A refused connection has no SQLSTATE (libpq reports it as text): what the server said.
_LOGIN_REFUSED = (
    "authentication failed",
    "no pg_hba.conf entry",
    "no password supplied",
    "password is required",
)


def _failure_kind(exc: psycopg.Error) -> str:
    """What a database error means for the call: ``unavailable`` (the server down, restarting,
    out of connection slots, the connection lost: worth another attempt), ``login``,
    ``database`` (it does not exist), ``timeout`` (statement or lock timeout), or ``other``
    (the statement's own error)."""
    state = exc.sqlstate or ""
    if state in ("28000", "28P01"):
        return "login"
    if state == "3D000":
        return "database"
    if state in ("57014", "55P03"):
        return "timeout"
    if state.startswith("08") or state in _UNAVAILABLE_STATES:
        return "unavailable"
    if state or not isinstance(exc, psycopg.OperationalError):
        return "other"
    # libpq's own: a connection refused by the server, or one that could not be made or was
    # lost (refused, reset, a host name that does not resolve, timed out): retried.
    said = str(exc).lower()
    if any(reason in said for reason in _LOGIN_REFUSED) or (
        'role "' in said and "does not exist" in said
    ):
        return "login"
    if 'database "' in said and "does not exist" in said:
        return "database"
    return "unavailable"


class _Failure(NamedTuple):
    """What the store keeps of a database error: its meaning (``_failure_kind``), the
    server's words and SQLSTATE. Never the psycopg error itself, which is never chained to
    the store's errors either: one raised by a connection attempt holds the connection's
    settings, the password among them."""

    kind: str
    detail: str
    sqlstate: str = ""

    @classmethod
    def of(cls, exc: psycopg.Error) -> _Failure:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return cls(_failure_kind(exc), detail, exc.sqlstate or "")


class _Pool(ConnectionPool[Any]):
    """psycopg's pool, counting the connections it has lent: a call that waited for one in
    vain is told apart from one whose pool is still reconnecting to a server come back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lent = 0
        self._lent_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def getconn(self, timeout: float | None = None) -> Any:
        conn = super().getconn(timeout)
        with self._lent_lock:
            self.lent += 1
        return conn

    def putconn(self, conn: Any) -> None:
        with self._lent_lock:
            self.lent -= 1
        super().putconn(conn)


class _Retry:
    """One store call's attempts against a server that went away: a first retry at once (a
    connection of the pool lost, the next may be good), then exponential backoff with
    jitter, until the store's ``retry_timeout`` has passed since the call began."""

    FIRST_PAUSE = 0.05
    LONGEST_PAUSE = 2.0

    def __init__(self, store: PostgresRunLogStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.started = time.monotonic()
        self.deadline = self.started + store.retry_timeout
        self.attempts = 0
        self.in_doubt = False  # a write was lost while it was being committed

    def pause(self, cause: _Failure, *, in_doubt: bool = False) -> None:
        """Wait before the next attempt, or raise PostgresUnavailableError past the budget."""
        self.attempts += 1
        self.in_doubt = self.in_doubt or in_doubt
        pause = 0.0
        if self.attempts > 1:
            pause = min(self.LONGEST_PAUSE, self.FIRST_PAUSE * 2 ** (self.attempts - 2))
            pause *= random.uniform(0.5, 1.0)
        if time.monotonic() + pause > self.deadline:
            raise self.error(cause)
        time.sleep(pause)

    def error(self, cause: _Failure, *, in_doubt: bool = False) -> PostgresUnavailableError:
        store = self.store
        in_doubt = self.in_doubt or in_doubt
        operation = store._operation()
        detail = cause.detail
        waited = time.monotonic() - self.started
        message = (
            f"PostgreSQL at {store.location()}: {store._call(operation, self.run_id)} failed: "
            f"the server was unreachable or dropped the connection for {waited:.1f}s "
            f"({self.attempts + 1} attempts, retry_timeout {store.retry_timeout:g}s): {detail}"
        )
        if in_doubt:
            message += (
                "; the connection was lost while the write was being committed, so it may "
                "have been stored or not"
            )
        return PostgresUnavailableError(
            message,
            in_doubt=in_doubt,
            path=store.location(),
            run_id=self.run_id,
            operation=operation,
            sqlstate=cause.sqlstate,
        )


def _carries_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


class PostgresRunLogStore(ChunkedRunLogStore):
    """Run logs as rows of a PostgreSQL database (see the module docstring); safe for parallel
    writers anywhere."""

    # A refused value is never echoed into an error: it may hold the password.
    model_config = ConfigDict(hide_input_in_errors=True)

    service_name: str = "postgres"

    url: str = Field(
        default="",
        description="a postgresql:// connection URL without the password; the settings below "
        "override its parts",
    )
    host: str | None = Field(default=None, description="server host name, or a socket folder")
    port: int | None = Field(default=None, ge=1, le=65535)
    dbname: str | None = Field(default=None, validation_alias=AliasChoices("dbname", "database"))
    user: str | None = None
    password: SecretStr | None = Field(default=None, description="never shown nor logged")
    schema_name: str = Field(
        default="runlog",
        validation_alias=AliasChoices("schema_name", "schema"),
        description="the schema holding the store's tables, created at first use",
    )
    pool_size: int = Field(default=4, ge=1, le=1000, description="connections per process")
    connect_timeout: float = Field(default=10.0, gt=0)
    retry_timeout: float = Field(
        default=60.0,
        ge=0,
        description="how long, in seconds, a call keeps trying a server that went away (a "
        "restart, a crash, a failover) before it fails",
    )

    # The schemas this store object has checked (and migrated) in this process.
    _migrated: set[str] = PrivateAttr(default_factory=set)
    _location_cache: Any = PrivateAttr(default=None)  # (settings, location())
    _pool_key_cache: Any = PrivateAttr(default=None)  # (settings, _pool_key())
    # The bytes this store last wrote (or read) of rows it may patch, the run's row (kind "run",
    # name "") and branches': (run_id, kind, name) -> bytes. A patch of such a row is one
    # statement updating it only if it still holds them (see _patch_known).
    _rows_written: dict[tuple[str, str, str], bytes] = PrivateAttr(default_factory=dict)
    PER_PROCESS_STATE: ClassVar[tuple[str, ...]] = (
        *ChunkedRunLogStore.PER_PROCESS_STATE,
        "_migrated",
        "_pool_key_cache",  # it holds the password in clear
        "_rows_written",
    )

    def __init__(self, **data: Any) -> None:
        # Checked before pydantic sees the value, so the error is this typed one, never one
        # that says the input.
        value = data.get("url")
        if isinstance(value, str) and _carries_password(value):
            raise ConfigurationError(PASSWORD_IN_URL, key="url")
        super().__init__(**data)

    @field_validator("url")
    @classmethod
    def _no_password(cls, value: str) -> str:
        # Assigned later: refused all the same.
        if _carries_password(value):
            raise ValueError(PASSWORD_IN_URL)
        if value and urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("the url must be a postgresql:// URL")
        return value

    @field_validator("schema_name")
    @classmethod
    def _plain_schema(cls, value: str) -> str:
        if not SCHEMA_PATTERN.fullmatch(value):
            raise ValueError(
                "the schema name must be 1-63 lower-case letters, digits and underscores, "
                "not starting with a digit"
            )
        return value

    # --- where ------------------------------------------------------------------------------

    def _conninfo(self) -> str:
        parts = {
            key: value
            for key, value in (
                ("host", self.host),
                ("port", self.port),
                ("dbname", self.dbname),
                ("user", self.user),
            )
            if value is not None
        }
        return make_conninfo(self.url, **parts)

    def location(self) -> str:
        """``postgresql://[user@]host:port/dbname/schema``: never the password."""
        # Every call names it (in errors it may raise), and parsing the settings costs more
        # than the call's own query: kept per settings.
        key = (self.url, self.host, self.port, self.dbname, self.user, self.schema_name)
        cached = self._location_cache
        if cached is not None and cached[0] == key:
            return str(cached[1])
        where = self._where()
        self._location_cache = (key, where)
        return where

    def _where(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self._conninfo())
        host = str(info.get("host") or os.environ.get("PGHOST") or "localhost")
        port = str(info.get("port") or os.environ.get("PGPORT") or "5432")
        user = info.get("user")
        dbname = info.get("dbname") or user or ""
        who = f"{user}@" if user else ""
        return f"postgresql://{who}{host}:{port}/{dbname}/{self.schema_name}"

    def _location(self, run_id: str, name: str = "") -> str:
        where = f"{self.location()}/{run_id}"
        return f"{where}/{name}" if name else where

    # --- connections and transactions -------------------------------------------------------

    def _pool(self) -> ConnectionPool[Any]:
        """This process's pool for these connection settings, the tables checked (and brought
        forward) at this store object's first call."""
        migrated: set[str] = self.__pydantic_private__["_migrated"]  # type: ignore[index]
        if self.schema_name not in migrated:
            self._migrate()
            migrated.add(self.schema_name)
        return _shared_pool(self._pool_key(), self._new_pool)

    def _pool_key(self) -> _PoolKey:
        # Built on every call, and the connection string's parsing costs a tenth of a
        # one-statement call: kept per settings.
        settings = (
            self.url,
            self.host,
            self.port,
            self.dbname,
            self.user,
            self.password,
            self.pool_size,
            self.connect_timeout,
        )
        cached = self._pool_key_cache
        if cached and cached[0] == settings:  # () in a process it was pickled into
            return cached[1]  # type: ignore[no-any-return]
        secret = self.password.get_secret_value() if self.password is not None else None
        key = (self._conninfo(), secret, self.pool_size, self.connect_timeout)
        self._pool_key_cache = (settings, key)
        return key

    def _new_pool(self) -> ConnectionPool[Any]:
        return _Pool(
            self._conninfo(),
            kwargs=self._connect_kwargs(),
            min_size=1,
            max_size=self.pool_size,
            timeout=self.connect_timeout,
            # A connection the server dropped (a restart) is found out before use.
            check=_check_idle_connection,
            name="runlog-store",
            open=True,
        )

    def close(self) -> None:
        """Close this process's connections of these settings (a later call opens new ones;
        other store objects of the same settings share them, and reopen them too)."""
        with _POOLS_LOCK:
            pool = _POOLS.pop(self._pool_key(), None)
        if pool is not None:
            pool.close()

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "autocommit": True,  # transactions are explicit: conn.transaction()
            "connect_timeout": max(1, round(self.connect_timeout)),
            "application_name": "runlog-store",
        }
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        return kwargs

    def _storage_error(
        self, failure: _Failure | psycopg.Error, run_id: str = "", operation: str = ""
    ) -> PostgresError:
        """A database error as the store's typed one, naming the server, database, schema and
        call; libpq's messages never hold the password (it is never part of the connection
        string either). Raise it outside the ``except`` clause that caught the psycopg error,
        so that the error is not its context (see _Failure)."""
        if isinstance(failure, psycopg.Error):
            failure = _Failure.of(failure)
        operation = operation or self._operation()
        kind, detail, state = failure
        error_type: type[PostgresError] = {
            "login": PostgresLoginError,
            "database": PostgresDatabaseNotFoundError,
            "timeout": PostgresTimeoutError,
            "unavailable": PostgresUnavailableError,
        }.get(kind, PostgresError)
        return error_type(
            f"PostgreSQL at {self.location()}: {self._call(operation, run_id)} failed: {detail}",
            path=self.location(),
            run_id=run_id,
            operation=operation,
            sqlstate=state,
        )

    @staticmethod
    def _call(operation: str, run_id: str) -> str:
        what = operation or "a call"
        return f"{what} of run {run_id!r}" if run_id else what

    def _operation(self) -> str:
        """The store API call (``add_step_log``...) this error happened in: the one an operator
        knows, where the primitives below it are shared by many; the outermost one, which the
        caller made (``get_run_log_by_id`` calls ``get_run_log_json``). Looked up on the
        stack, and only when an error is raised."""
        found = ""
        frame = sys._getframe(1)
        while frame is not None:
            name = frame.f_code.co_name
            if not name.startswith("_") and frame.f_locals.get("self") is self:
                found = name
            frame = frame.f_back  # type: ignore[assignment]
        return found

    def _migrate(self) -> None:
        """Bring the database's tables to the schema this release knows (migrations applied
        under an advisory lock), or refuse a newer one: SchemaVersionError. Database errors
        are left to the caller's retry (_transaction): bringing the tables forward is
        idempotent."""
        with psycopg.connect(self._conninfo(), **self._connect_kwargs()) as conn:
            if self._schema_version(conn) == migrations.LATEST:
                return
            with conn.transaction():
                key = f"runlog_store.schema:{self.schema_name}"
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])
                conn.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {schema}"))
                conn.execute(self._sql(migrations.VERSION_TABLE))
                found = self._schema_version(conn)
                for migration in migrations.MIGRATIONS:
                    if migration.version <= found:
                        continue
                    for statement in migration.statements:
                        conn.execute(self._sql(statement))
                    conn.execute(
                        self._sql(
                            "INSERT INTO {schema}.schema_version (version, description) "
                            "VALUES (%s, %s)"
                        ),
                        [migration.version, migration.description],
                    )

    def _schema_version(self, conn: Connection[Any]) -> int:
        """The newest migration applied to the database (0: none); SchemaVersionError past
        the newest this release knows."""
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", [f"{self._schema()}.schema_version"]
        ).fetchone()
        if row is None or not row[0]:
            return 0
        found_row = conn.execute(
            self._sql("SELECT coalesce(max(version), 0) FROM {schema}.schema_version")
        ).fetchone()
        found = int(found_row[0]) if found_row is not None else 0
        if found > migrations.LATEST:
            raise SchemaVersionError(
                f"the tables in {self.location()} are of schema version {found}, newer than "
                f"version {migrations.LATEST} this release of runlog-store knows: they were "
                "written by a newer release; upgrade runlog-store to use them",
                found=found,
                known=migrations.LATEST,
                path=self.location(),
            )
        return found

    def _schema(self) -> str:
        return '"' + self.schema_name + '"'  # a plain name (SCHEMA_PATTERN): quoting suffices

    def _sql(self, statement: str) -> bytes:
        return statement.replace("{schema}", self._schema()).encode()

    def _transaction(
        self,
        run_id: str,
        work: Callable[[Cursor[Any]], _T],
        *,
        read_only: bool = False,
        atomic: bool = True,
        idempotent: bool = True,
        in_doubt: Callable[[Cursor[Any]], _T | None] | None = None,
    ) -> _T:
        """``work`` in one transaction (a snapshot for reads; without ``atomic``, ``work`` is
        one statement, its own transaction); database errors as typed PostgresErrors.

        Run again when it lost a deadlock or a serialization conflict, and, with backoff
        until ``retry_timeout``, when the server could not be reached or the connection was
        lost (a restart, a crash, a failover). A connection lost before the commit was sent
        changed nothing: the work runs again. One lost while committing (a one-statement
        ``work``'s statement, an atomic one's COMMIT) leaves the write in doubt: an
        ``idempotent`` work (a read; a write that sets rows or keys to values it carries,
        which every store call but creating and deleting a run is) runs again, as the same
        write again gives the same rows; otherwise ``in_doubt`` is asked first, on a new
        connection, what the lost attempt did: its result, or None when it did nothing (the
        work then runs again)."""
        retry = _Retry(self, run_id)
        conflicts = 0
        doubt = False  # the last attempt was lost while committing a write that is not idempotent
        while True:
            committing = False
            pool = None
            failure: _Failure | None = None
            missing_run = pool_timed_out = False
            try:
                pool = self._pool()
                with pool.connection() as conn:
                    if doubt and in_doubt is not None:
                        with conn.cursor() as cur:
                            found = in_doubt(cur)
                        if found is not None:
                            return found
                        doubt = False
                    committing = not atomic  # one statement: sent is committing
                    with (
                        conn.transaction() if atomic else contextlib.nullcontext(),
                        conn.cursor() as cur,
                    ):
                        if read_only:
                            cur.execute(
                                b"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                            )
                        result = work(cur)
                        committing = True  # the COMMIT, as the block ends
                    return result
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                conflicts += 1
                failure = _Failure.of(exc) if conflicts == TRANSACTION_ATTEMPTS else None
                if failure is None:
                    time.sleep(0.001 * conflicts)
                    continue
            except psycopg.errors.ForeignKeyViolation:
                # A node written into a run that does not exist (deleted meanwhile).
                missing_run = True
            except PoolTimeout:
                pool_timed_out = True
            except psycopg.Error as exc:
                failure = _Failure.of(exc)
            # Out of the except clauses: what is raised below has no psycopg error as its
            # context (see _Failure).
            if missing_run:
                raise ChunkNotFoundError(
                    f"run {run_id!r} does not exist", path=self._location(run_id), run_id=run_id
                )
            if pool_timed_out:
                assert pool is not None  # only the pool's connection() raises it
                cause = self._no_connection(run_id, pool)
                if cause is not None:
                    retry.pause(cause)
                elif time.monotonic() > retry.deadline:
                    raise retry.error(_Failure("unavailable", "the pool was still reconnecting"))
                continue
            assert failure is not None
            if failure.kind != "unavailable" or conflicts == TRANSACTION_ATTEMPTS:
                raise self._storage_error(failure, run_id)
            if committing and not idempotent:
                if in_doubt is None:
                    raise retry.error(failure, in_doubt=True)
                doubt = True
            retry.pause(failure, in_doubt=committing)

    def _created_in_doubt(self, cur: Cursor[Any], run_id: str, run_log: bytes) -> bool | None:
        """What a create whose connection was lost while it was committed did: nothing (no
        row: None, it runs again), or stored the run (its row holds the document it sent).
        Another document is another creator's (no other writer knows the run before its
        create returns): False, the run exists."""
        cur.execute(self._sql("SELECT document FROM {schema}.runs WHERE run_id = %s"), [run_id])
        row = cur.fetchone()
        if row is None:
            return None
        return bytes(row[0]) == run_log

    def _deleted_in_doubt(self, cur: Cursor[Any], run_id: str) -> bool | None:
        """What a delete whose connection was lost while it was committed did: the run is
        gone (True: deleted, by this call or one at the same moment), or it is still there
        (None: the delete runs again)."""
        cur.execute(self._sql("SELECT 1 FROM {schema}.runs WHERE run_id = %s"), [run_id])
        return None if cur.fetchone() is not None else True

    def _no_connection(self, run_id: str, pool: ConnectionPool[Any]) -> _Failure | None:
        """Why the pool gave no connection in time, found out with a connection of our own:
        the server's refusal (a login refused, a missing database: raised), the server
        unreachable (that error: the caller retries), or the server answering. Then either
        every connection of the pool is lent (raised: PostgresPoolExhaustedError), or the
        pool is still waiting out its own backoff after the server came back: it is
        replaced, and None says to try again at once."""
        failure = None
        try:
            with psycopg.connect(self._conninfo(), **self._connect_kwargs()):
                pass
        except psycopg.Error as exc:
            failure = _Failure.of(exc)
        if failure is not None:
            if failure.kind == "unavailable":
                return failure
            self._drop_pool(pool)  # its attempts in the background would fail on and on
            raise self._storage_error(failure, run_id)
        if isinstance(pool, _Pool) and pool.lent >= self.pool_size:
            operation = self._operation()
            raise PostgresPoolExhaustedError(
                f"PostgreSQL at {self.location()}: {self._call(operation, run_id)} failed: no "
                f"connection of this process's pool was free within {self.connect_timeout:g}s "
                f"(all {self.pool_size} busy: raise pool_size)",
                path=self.location(),
                run_id=run_id,
                operation=operation,
            )
        self._drop_pool(pool)
        return None

    def _drop_pool(self, pool: ConnectionPool[Any]) -> None:
        """Forget ``pool`` (the next call opens a new one) and close it without waiting for
        its threads: connections lent out are closed as they come back."""
        with _POOLS_LOCK:
            for key, found in list(_POOLS.items()):
                if found is pool:
                    del _POOLS[key]
        pool.close(timeout=0)

    # --- storage primitives -------------------------------------------------------------------

    def _insert_run(self, run_id: str, run_log: bytes) -> bool:
        def insert(cur: Cursor[Any]) -> bool:
            # The run's row with its summary and search rows (postgres_search): one statement.
            return postgres_search.insert_run(self, cur, run_id, run_log)

        inserted = self._transaction(
            run_id,
            insert,
            atomic=False,  # one statement
            idempotent=False,  # a second insert would find the first's row: "exists"
            in_doubt=lambda cur: self._created_in_doubt(cur, run_id, run_log),
        )
        if inserted:
            self._remember(run_id, "run", "", run_log)
        return inserted

    def _create(self, run_id: str, run_log: bytes) -> None:
        if not self._insert_run(run_id, run_log):
            raise RunLogExistsError(run_id, path=self._location(run_id))

    def _prepare(self, run_id: str, run_log: bytes) -> None:
        self._insert_run(run_id, run_log)

    def _remember(self, run_id: str, kind: str, name: str, body: bytes) -> None:
        known: dict[tuple[str, str, str], bytes] = self.__pydantic_private__["_rows_written"]  # type: ignore[index]
        if len(known) > MAX_REMEMBERED:
            known.clear()  # only an optimisation
        known[(run_id, kind, name)] = body

    def _write(self, run_id: str, changes: list[Change]) -> None:
        if len(changes) == 1 and self._patch_known(run_id, changes[0]):
            return
        # A new step or branch is placed among its siblings by when it was first stored: by the
        # server's clock (one clock for writers on every machine), the start of the call's
        # transaction in nanoseconds plus the change's place in the call, numbered before the
        # rows are sorted.
        stamped = list(zip(changes, range(len(changes)), strict=True))
        # The run's row first, then the nodes in one order: two calls touching the same rows
        # take their locks in the same order (a deadlock is retried anyway).
        run_level = [s for s in stamped if s[0].kind in ("run-set", "run-merge")]
        nodes = sorted(
            (s for s in stamped if s[0].kind not in ("run-set", "run-merge")),
            key=lambda s: (s[0].kind.partition("-")[0], s[0].target),
        )
        location = self._location(run_id)

        def write(cur: Cursor[Any]) -> None:
            for change, place in run_level + nodes:
                if change.kind in ("run-set", "run-merge"):
                    merge = change.keys if change.kind == "run-merge" else ()
                    self._patch_run(cur, run_id, change.body, merge, location)
                elif change.kind == "branch-merge":
                    self._patch_branch(cur, run_id, change, location)
                else:
                    kind: NodeKind = "step" if change.kind == "step-put" else "branch"
                    cur.execute(
                        self._sql(
                            "INSERT INTO {schema}.nodes "
                            "(run_id, kind, internal_name, created_ns, body) "
                            "VALUES (%s, %s, %s, "
                            "(extract(epoch FROM transaction_timestamp()) * 1000000)::bigint"
                            " * 1000 + %s, %s) "
                            "ON CONFLICT (run_id, kind, internal_name) DO UPDATE "
                            "SET body = EXCLUDED.body, modified = clock_timestamp()"
                        ),
                        [run_id, kind, change.target, place, change.body],
                    )
            if run_level:
                # The run's own fields changed: its summary too, in the same transaction.
                postgres_search.summarize_again(self, cur, run_id)

        # A call that stores one step or branch is one statement: its own transaction, without
        # the round trips of BEGIN and COMMIT (runnable's most frequent write).
        single = len(changes) == 1 and changes[0].kind in ("step-put", "branch-put")
        self._transaction(run_id, write, atomic=not single)
        for change in changes:
            if change.kind == "branch-put":  # the row holds these bytes now
                self._remember(run_id, "branch", change.target, change.body)

    def _patch_known(self, run_id: str, change: Change) -> bool:
        """A patch of a row whose bytes this store knows (it wrote them: runnable sets a
        branch's parameters right after storing it) as one statement: the bytes patched here,
        stored only if the row still holds those it was patched from. False when the row
        holds others (another writer's) or none is known: the caller then patches it under
        its lock. Bytes equal to those known give the same result whoever wrote them."""
        if change.kind in ("run-set", "run-merge"):
            key = (run_id, "run", "")
            merge = change.keys if change.kind == "run-merge" else ()
        elif change.kind == "branch-merge":
            key = (run_id, "branch", change.target)
            merge = change.keys
        else:
            return False
        known: dict[tuple[str, str, str], bytes] = self.__pydantic_private__["_rows_written"]  # type: ignore[index]
        before = known.pop(key, None)
        if before is None:
            return False
        location = self._location(run_id)
        after = _core.apply_patch(
            location, before, change.body, merge_keys=list(merge), run_id=run_id
        )

        def update(cur: Cursor[Any]) -> bool:
            if key[1] == "run":
                # The run's own fields changed: its summary too, in the same transaction.
                updated = self._update_run(cur, run_id, after, before)
                if updated:
                    postgres_search.summarize_again(self, cur, run_id)
                return updated
            cur.execute(
                self._sql(
                    "UPDATE {schema}.nodes SET body = %s, modified = clock_timestamp() "
                    "WHERE run_id = %s AND kind = 'branch' AND internal_name = %s AND body = %s"
                ),
                [after, run_id, change.target, before],
            )
            return cur.rowcount == 1

        # One statement, or two and the run's summary for a change of the run's fields.
        if not self._transaction(run_id, update, atomic=key[1] == "run"):
            return False
        self._remember(*key, after)
        return True

    def _update_run(
        self, cur: Cursor[Any], run_id: str, document: bytes, before: bytes | None = None
    ) -> bool:
        """Store the run's document (the one statement that does: its row alone); with
        ``before``, only if the row holds those bytes. Whether the row was updated."""
        if before is None:
            cur.execute(
                self._sql(
                    "UPDATE {schema}.runs SET document = %s, modified = clock_timestamp() "
                    "WHERE run_id = %s"
                ),
                [document, run_id],
            )
        else:
            cur.execute(
                self._sql(
                    "UPDATE {schema}.runs SET document = %s, modified = clock_timestamp() "
                    "WHERE run_id = %s AND document = %s"
                ),
                [document, run_id, before],
            )
        return cur.rowcount == 1

    def _patch_run(
        self,
        cur: Cursor[Any],
        run_id: str,
        patch: bytes,
        merge_keys: tuple[str, ...],
        location: str,
    ) -> None:
        # FOR NO KEY UPDATE: the run's row is locked against other patches, not against the
        # inserts of nodes (their foreign key check takes a KEY SHARE lock).
        cur.execute(
            self._sql("SELECT document FROM {schema}.runs WHERE run_id = %s FOR NO KEY UPDATE"),
            [run_id],
        )
        row = cur.fetchone()
        if row is None:
            raise ChunkNotFoundError(f"run {run_id!r} does not exist", path=location, run_id=run_id)
        document = _core.apply_patch(
            location, bytes(row[0]), patch, merge_keys=list(merge_keys), run_id=run_id
        )
        self._update_run(cur, run_id, document)
        self._remember(run_id, "run", "", document)

    def _patch_branch(self, cur: Cursor[Any], run_id: str, change: Change, location: str) -> None:
        cur.execute(
            self._sql(
                "SELECT body FROM {schema}.nodes WHERE run_id = %s AND kind = 'branch' "
                "AND internal_name = %s FOR NO KEY UPDATE"
            ),
            [run_id, change.target],
        )
        row = cur.fetchone()
        if row is None:
            raise BranchLogNotFoundError(run_id, change.target, path=location)
        body = _core.apply_patch(
            location, bytes(row[0]), change.body, merge_keys=list(change.keys), run_id=run_id
        )
        cur.execute(
            self._sql(
                "UPDATE {schema}.nodes SET body = %s, modified = clock_timestamp() "
                "WHERE run_id = %s AND kind = 'branch' AND internal_name = %s"
            ),
            [body, run_id, change.target],
        )
        self._remember(run_id, "branch", change.target, body)

    def _ended(self, run_id: str, branch: str) -> None:
        """Nothing to fold (a run's rows are its final form). At the run's end, its merge is
        kept in its row with the stamp of the rows it was made from: a full read of the ended
        run is that one value while the stamp holds, not a merge of every row (as the other
        stores keep the merge of a run at its end)."""
        if branch:
            return

        def read(cur: Cursor[Any]) -> list[tuple[Any, ...]]:
            cur.execute(
                self._sql(
                    "SELECT NULL, NULL, NULL, document, " + _ROWS_STAMP + " FROM {schema}.runs r "
                    "WHERE run_id = %s UNION ALL SELECT kind, internal_name, created_ns, body, "
                    "NULL FROM {schema}.nodes WHERE run_id = %s"
                ),
                [run_id, run_id],
                binary=True,
            )
            return cur.fetchall()

        rows = self._transaction(run_id, read, atomic=False)  # one snapshot
        run = next((row for row in rows if row[0] is None), None)
        if run is None:
            return  # deleted meanwhile
        nodes = [row[:4] for row in rows if row[0] is not None]
        try:
            merged, _ = _core.merge_rows(
                self._location(run_id), bytes(run[3]), nodes, run_id=run_id
            )
        except RunLogStoreError:
            return  # a damaged row: a read merges the rows, and says so

        def keep(cur: Cursor[Any]) -> None:
            cur.execute(
                self._sql(
                    "UPDATE {schema}.runs SET merged = %s, merged_stamp = %s WHERE run_id = %s"
                ),
                [merged, run[4], run_id],
            )

        # Only a shortcut for reads: the call that ended the run has stored what it stores.
        with contextlib.suppress(StorageError):
            self._transaction(run_id, keep, atomic=False)

    def _forget(self, run_id: str) -> None:
        super()._forget(run_id)
        known: dict[tuple[str, str, str], bytes] = self.__pydantic_private__["_rows_written"]  # type: ignore[index]
        for key in [key for key in known if key[0] == run_id]:
            del known[key]

    def _select(
        self, run_id: str, where: str = "", params: tuple[Any, ...] = ()
    ) -> tuple[bytes, list[tuple[str, str, int, bytes]]]:
        """The run's document and the (kind, internal name, created_ns, body) rows of its
        nodes that ``where`` picks: one statement (one snapshot, without the round trips of a
        transaction), its result in binary (bytea as it is, not as hex text)."""

        def read(cur: Cursor[Any]) -> list[tuple[Any, ...]]:
            cur.execute(
                self._sql(
                    "SELECT NULL, NULL, NULL, document FROM {schema}.runs WHERE run_id = %s "
                    "UNION ALL SELECT kind, internal_name, created_ns, body FROM {schema}.nodes "
                    "WHERE run_id = %s" + where
                ),
                [run_id, run_id, *params],
                binary=True,
            )
            return cur.fetchall()

        rows = self._transaction(run_id, read, atomic=False)
        # The run's row is the one without a kind: first, as the server runs the union.
        at = 0 if rows and rows[0][0] is None else None
        if at is None:
            at = next((i for i, row in enumerate(rows) if row[0] is None), None)
        if at is None:
            raise ChunkNotFoundError(
                f"run {run_id!r} does not exist", path=self._location(run_id), run_id=run_id
            )
        document = bytes(rows.pop(at)[3])
        return document, rows

    def _read_full(self, run_id: str, salvage: bool) -> tuple[bytes, list[tuple[str, str]]]:
        def kept(cur: Cursor[Any]) -> Any:
            cur.execute(
                self._sql(
                    "SELECT merged FROM {schema}.runs r WHERE run_id = %s "
                    "AND merged IS NOT NULL AND merged_stamp = " + _ROWS_STAMP
                ),
                [run_id],
                binary=True,
            )
            row = cur.fetchone()
            return None if row is None else row[0]

        # The merge kept at the run's end, while its rows are those it was made from.
        merged = self._transaction(run_id, kept, atomic=False)
        if merged is not None:
            return bytes(merged), []
        document, rows = self._select(run_id)
        # The rows' chunk names and headers made in Rust: no Python call per row.
        merged, skipped = _core.merge_rows(
            self._location(run_id), document, rows, salvage=salvage, run_id=run_id
        )
        assert merged is not None  # the full view always has a document
        return merged, skipped

    def _read_run(self, run_id: str, steps: bool) -> bytes:
        # Without steps, no node is needed. With them, the merger picks the root steps among
        # the branches and the steps that may be root ones: a step of a branch is named
        # <branch>.<name>, so a step named below a stored branch is left out (in a map run,
        # nearly every step), while one with at most one dot may be a root step whatever is
        # stored (a branch's name has a dot itself).
        where = " AND false"
        if steps:
            where = (
                " AND (kind = 'branch'"
                " OR length(internal_name) - length(replace(internal_name, '.', '')) <= 1"
                " OR regexp_replace(internal_name, '[.][^.]*$', '') NOT IN ("
                "SELECT internal_name FROM {schema}.nodes WHERE run_id = %s AND kind = 'branch'"
                "))"
            )
        document, rows = self._select(run_id, where, (run_id,) if steps else ())
        merged, _ = _core.merge_rows(
            self._location(run_id), document, rows, view="run", run_id=run_id
        )
        assert merged is not None
        return merged

    def _read_branch(self, run_id: str, name: str) -> bytes | None:
        # The branch and everything named below it: its steps, and the branches nested in
        # it that decide which steps are its own; one statement, which also says whether the
        # run has the branch (ChunkNotFoundError without the run).
        document, rows = self._select(
            run_id,
            " AND (internal_name = %s OR left(internal_name, %s) = %s)",
            (name, len(name) + 1, name + "."),
        )
        if not any(row[0] == "branch" and row[1] == name for row in rows):
            return None
        merged, _ = _core.merge_rows(
            self._location(run_id), document, rows, view="branch", name=name, run_id=run_id
        )
        return merged

    def _one(self, run_id: str, sql: str, params: list[Any]) -> Any:
        def read(cur: Cursor[Any]) -> Any:
            cur.execute(self._sql(sql), params)
            row = cur.fetchone()
            return None if row is None else row[0]

        return self._transaction(run_id, read, atomic=False)  # one statement

    def _read_step(self, run_id: str, name: str) -> bytes | None:
        body = self._one(
            run_id,
            "SELECT body FROM {schema}.nodes "
            "WHERE run_id = %s AND kind = 'step' AND internal_name = %s",
            [run_id, name],
        )
        return None if body is None else bytes(body)

    def _has_branch(self, run_id: str, name: str) -> bool:
        """Whether the run has the branch; ChunkNotFoundError when it has no run (one query)."""
        found = self._one(
            run_id,
            "SELECT EXISTS (SELECT 1 FROM {schema}.nodes "
            "WHERE run_id = %s AND kind = 'branch' AND internal_name = %s) "
            "FROM {schema}.runs WHERE run_id = %s",
            [run_id, name, run_id],
        )
        if found is None:
            raise ChunkNotFoundError(
                f"run {run_id!r} does not exist", path=self._location(run_id), run_id=run_id
            )
        return bool(found)

    def _run_exists(self, run_id: str) -> bool:
        found = self._one(run_id, "SELECT 1 FROM {schema}.runs WHERE run_id = %s", [run_id])
        return found is not None

    # --- listing and deleting ---------------------------------------------------------------

    def list_run_ids(self) -> list[str]:
        """Run ids, the most recently changed run first (a change of its own fields)."""

        def read(cur: Cursor[Any]) -> list[str]:
            cur.execute(
                self._sql("SELECT run_id FROM {schema}.runs ORDER BY modified DESC, run_id DESC")
            )
            return [str(row[0]) for row in cur.fetchall()]

        return self._transaction("", read)

    def run_modified(self, run_id: str) -> float | None:
        """When the run's row or any of its nodes was last written."""
        found = self._one(
            run_id,
            "SELECT extract(epoch FROM greatest("
            "(SELECT modified FROM {schema}.runs WHERE run_id = %s), "
            "(SELECT max(modified) FROM {schema}.nodes WHERE run_id = %s)))",
            [run_id, run_id],
        )
        return None if found is None else float(found)

    def run_bytes(self, run_id: str) -> int | None:
        """The bytes the run's JSON takes in its rows as stored (compressed when the server
        compresses it), what ``runlog gc`` says deleting it frees; None without the run. The
        rows' own overhead and the indexes are not counted."""
        found = self._one(
            run_id,
            "SELECT pg_column_size(document) + coalesce((SELECT sum(pg_column_size(body)) "
            "FROM {schema}.nodes WHERE run_id = %s), 0) FROM {schema}.runs WHERE run_id = %s",
            [run_id, run_id],
        )
        return None if found is None else int(found)

    def delete_run(self, run_id: str) -> None:
        """Remove the run's row and, in the same transaction, its nodes: readers see the whole
        run or none, and a writer after it finds the run gone."""
        self._check(run_id)

        def delete(cur: Cursor[Any]) -> bool:
            cur.execute(self._sql("DELETE FROM {schema}.runs WHERE run_id = %s"), [run_id])
            return cur.rowcount == 1

        deleted = self._transaction(
            run_id,
            delete,
            idempotent=False,  # a second delete would find no row: "not found"
            in_doubt=lambda cur: self._deleted_in_doubt(cur, run_id),
        )
        if not deleted:
            raise RunLogNotFoundError(run_id, path=self._location(run_id))
        self._forget(run_id)

    # --- searching runs ---------------------------------------------------------------------

    def search_runs(
        self,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
        max_results: int = 100,
        page_token: str | None = None,
        callback: Callback = NO_PROGRESS,
    ) -> RunPage:
        """One page of the summaries of the runs that match ``filter``, in ``order_by`` order
        (docs/search.md), and the token of the next page (None on the last one): one SQL
        statement over the runs' summaries kept in the database (postgres_search), no run
        read. Pages are by keyset: the next page starts after the last run of this one."""
        return postgres_search.search_runs(self, filter, order_by, max_results, page_token)

    def iter_runs(
        self,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
        page_size: int = 1000,
    ) -> Iterator[RunSummary]:
        """Every run that matches ``filter`` in ``order_by`` order, a page at a time."""
        return postgres_search.iter_runs(self, filter, order_by, page_size)

    # --- tools ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection[Any]]:
        """A connection of this process's pool (autocommit), for tools and tests."""
        with self._pool().connection() as conn:
            yield conn


__all__ = [
    "PostgresDatabaseNotFoundError",
    "PostgresError",
    "PostgresLoginError",
    "PostgresPoolExhaustedError",
    "PostgresRunLogStore",
    "PostgresTimeoutError",
    "PostgresUnavailableError",
    "SchemaVersionError",
]
