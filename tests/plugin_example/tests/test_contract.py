"""The example store held to runlog-store's contract, as a plugin author's own tests do it.

Run with the plugin installed (``pip install -e .[test]``): ``pytest``. The multi-process tests
start writer processes that build the store by its type name, so the entry point must be
installed, not just importable.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runlog_store.testing import StoreContract


class TestExampleDatabaseStore(StoreContract):
    @pytest.fixture
    def store_config(self, tmp_path: Path) -> dict[str, Any]:
        # A new database file per test; child processes open the same file.
        return {"type": "example-db", "connection_string": f"sqlite:///{tmp_path / 'runs.db'}"}

    @pytest.fixture
    def storage_listing(self, tmp_path: Path) -> Callable[[], object]:
        """Every row of the table, read behind the store's back."""

        def rows() -> object:
            with contextlib.closing(sqlite3.connect(tmp_path / "runs.db")) as db:
                return db.execute("SELECT run_id, document FROM runs ORDER BY run_id").fetchall()

        return rows
