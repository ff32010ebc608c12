"""A third-party run log store, registered through the entry point group of runlog-store.

Each run is one row of an SQLite table: its run id and its whole run log as JSON. The four
methods every store implements are below; every other method of the API is inherited and goes
through ``_updating``, which this store makes one ``BEGIN IMMEDIATE`` transaction, so writers
in any number of processes lose no update and a writer killed mid-write leaves the last
committed run (SQLite rolls the rest back). That is what lets it say
``supports_parallel_writes``; ``tests/contract/test_contract.py`` holds it to that with
``runlog_store.testing.StoreContract``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator

from pydantic import Field, PrivateAttr, field_validator

from runlog_store import BaseRunLogStore, RunLog, validate_run_id
from runlog_store.exceptions import RunLogExistsError, RunLogNotFoundError

SQLITE = "sqlite:///"


class ExampleDatabaseStore(BaseRunLogStore):
    service_name: str = "example-db"
    supports_parallel_writes: bool = True

    connection_string: str = Field(..., description="sqlite:///<file> or sqlite:///:memory:")
    table_name: str = Field(default="runs", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    busy_timeout: float = Field(default=60.0, gt=0, description="seconds to wait for a lock")

    _connection: sqlite3.Connection | None = PrivateAttr(default=None)
    # One connection per store object, shared by its threads one call at a time.
    _lock: threading.RLock = PrivateAttr(default_factory=threading.RLock)

    @field_validator("connection_string")
    @classmethod
    def _sqlite_only(cls, value: str) -> str:
        if not value.startswith(SQLITE):
            raise ValueError(f"this example store speaks SQLite only: {SQLITE}<file>")
        return value

    def location(self) -> str:
        """Where the runs are, for get_summary (the base class builds the summary)."""
        return f"{self.connection_string}#{self.table_name}"

    # --- the database -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; a write one takes the database's write lock before its first read,
        so no other writer gets in between its read and its write."""
        with self._lock:
            if self._connection is None:
                self._connection = sqlite3.connect(
                    self.connection_string[len(SQLITE) :],
                    timeout=self.busy_timeout,
                    isolation_level=None,  # transactions are ours to begin and end
                    check_same_thread=False,
                )
                self._connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.table_name} "
                    "(run_id TEXT PRIMARY KEY, document TEXT NOT NULL)"
                )
            db = self._connection
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _document(self, db: sqlite3.Connection, run_id: str) -> str:
        # Callers check the run id first (runlog-store's rules): an id that no other store
        # could hold, and that could not be copied to one, never reaches the database.
        row = db.execute(
            f"SELECT document FROM {self.table_name} WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise RunLogNotFoundError(run_id)
        return str(row[0])

    # --- the two methods every store implements ---------------------------------------------

    def get_run_log_by_id(self, run_id: str, full: bool = False) -> RunLog:
        return RunLog.model_validate_json(self.get_run_log_json(run_id))

    def put_run_log(self, run_log: RunLog) -> None:
        run_id = validate_run_id(run_log.run_id)
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO {self.table_name} (run_id, document) VALUES (?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET document = excluded.document",
                (run_id, run_log.model_dump_json()),
            )

    # --- what makes create_run_log and every inherited change safe for concurrent writers ----

    def _create_run(self, run_log: RunLog) -> None:
        """An exclusive create (the base class checks the run id and builds the run log)."""
        try:
            with self._transaction() as db:
                db.execute(
                    f"INSERT INTO {self.table_name} (run_id, document) VALUES (?, ?)",
                    (run_log.run_id, run_log.model_dump_json()),
                )
        except sqlite3.IntegrityError:
            raise RunLogExistsError(run_log.run_id) from None

    @contextlib.contextmanager
    def _updating(self, run_id: str) -> Iterator[RunLog]:
        validate_run_id(run_id)
        with self._transaction() as db:
            run_log = RunLog.model_validate_json(self._document(db, run_id))
            yield run_log
            db.execute(
                f"UPDATE {self.table_name} SET document = ? WHERE run_id = ?",
                (run_log.model_dump_json(), run_id),
            )

    # --- optional: fast reads, listing, deleting --------------------------------------------

    def get_run_log_json(self, run_id: str) -> bytes:
        validate_run_id(run_id)
        with self._transaction(write=False) as db:
            return self._document(db, run_id).encode()

    def list_run_ids(self) -> list[str]:
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT run_id FROM {self.table_name} ORDER BY rowid DESC")
            return [row[0] for row in rows]

    def delete_run(self, run_id: str) -> None:
        validate_run_id(run_id)
        with self._transaction() as db:
            deleted = db.execute(f"DELETE FROM {self.table_name} WHERE run_id = ?", (run_id,))
            if deleted.rowcount == 0:
                raise RunLogNotFoundError(run_id)


class NotAStore:
    pass
