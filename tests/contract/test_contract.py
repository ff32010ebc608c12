"""Every store and catalog of this package held to the contract suites of runlog_store.testing,
and the example plugin held to them by its own tests, installed as a plugin author installs it.

The bindings use only the stable entry points (``create_store``/``create_catalog`` by type
name), exactly as a third-party implementation would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from minio import Minio

from runlog_store.testing import CatalogContract, StoreContract

from ..conftest import InstalledPlugin


def _files(root: Path) -> Callable[[], object]:
    """Everything under ``root`` (the test's tmp_path, so a write outside the log folder
    shows too)."""
    return lambda: sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


def _objects(config: dict[str, Any]) -> Callable[[], object]:
    """Every object of the test's bucket, listed behind the store's back."""
    endpoint = urlsplit(config["endpoint_url"])
    client = Minio(
        endpoint.netloc,
        access_key=config["aws_access_key_id"],
        secret_key=config["aws_secret_access_key"],
        secure=endpoint.scheme == "https",
    )
    bucket = config["bucket"]

    def listing() -> object:
        if not client.bucket_exists(bucket):
            return []
        return sorted(obj.object_name for obj in client.list_objects(bucket, recursive=True))

    return listing


def _rows(config: dict[str, Any]) -> Callable[[], object]:
    """Every row of the test's schema, read behind the store's back."""
    import psycopg

    schema = config["schema_name"]
    keys = ("host", "port", "dbname", "user", "password")

    def listing() -> object:
        with psycopg.connect(**{key: config[key] for key in keys}) as conn:
            found = conn.execute("SELECT to_regclass(%s)", [f"{schema}.nodes"]).fetchone()
            if found is None or found[0] is None:
                return []
            runs = conn.execute(f"SELECT run_id, document FROM {schema}.runs").fetchall()
            nodes = conn.execute(
                f"SELECT run_id, kind, internal_name, body FROM {schema}.nodes"
            ).fetchall()
        return sorted(map(repr, runs + nodes))

    return listing


# --- run log stores ------------------------------------------------------------------------


class TestBufferedStore(StoreContract):
    shared_between_processes = False  # runs live in the memory of one store object

    @pytest.fixture
    def store_config(self) -> dict[str, Any]:
        return {"type": "buffered"}


class FolderStoreBinding(StoreContract):
    """The contract bound to a store in a log folder under the test's tmp_path."""

    store_type: ClassVar[str]

    @pytest.fixture
    def store_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"type": self.store_type, "log_folder": str(tmp_path / "logs"), "fsync": False}

    @pytest.fixture
    def storage_listing(self, tmp_path: Path) -> Callable[[], object]:
        return _files(tmp_path)


class MinioStoreBinding(StoreContract):
    """The contract bound to a store in a fresh bucket of the test MinIO server."""

    store_type: ClassVar[str]

    @pytest.fixture
    def store_config(self, minio_config: dict[str, str]) -> dict[str, Any]:
        return {"type": self.store_type, **minio_config}

    @pytest.fixture
    def storage_listing(self, minio_config: dict[str, str]) -> Callable[[], object]:
        return _objects(minio_config)


class TestFileSystemStore(FolderStoreBinding):
    store_type = "file-system"


class TestChunkedFileSystemStore(FolderStoreBinding):
    store_type = "chunked-fs"


class TestMinioStore(MinioStoreBinding):
    store_type = "minio"


class TestChunkedMinioStore(MinioStoreBinding):
    store_type = "chunked-minio"


class TestPostgresStore(StoreContract):
    """The contract bound to the postgres store in a fresh schema of the test cluster."""

    @pytest.fixture
    def store_config(self, postgres_config: dict[str, Any]) -> dict[str, Any]:
        return {"type": "postgres", **postgres_config}

    @pytest.fixture
    def storage_listing(self, postgres_config: dict[str, Any]) -> Callable[[], object]:
        return _rows(postgres_config)


# --- catalogs ------------------------------------------------------------------------------


class TestDoNothingCatalog(CatalogContract):
    keeps_files = False
    moves_whole_runs = False

    @pytest.fixture
    def catalog_config(self) -> dict[str, Any]:
        return {"type": "do-nothing"}


class FolderCatalogBinding(CatalogContract):
    """The contract bound to a catalog in a folder under the test's tmp_path."""

    catalog_type: ClassVar[str]

    @pytest.fixture
    def catalog_config(self, tmp_path: Path) -> dict[str, Any]:
        return {
            "type": self.catalog_type,
            "catalog_location": str(tmp_path / "catalog"),
            "fsync": False,
        }


class MinioCatalogBinding(CatalogContract):
    """The contract bound to a catalog in a fresh bucket of the test MinIO server."""

    catalog_type: ClassVar[str]

    @pytest.fixture
    def catalog_config(self, minio_config: dict[str, str]) -> dict[str, Any]:
        return {"type": self.catalog_type, **minio_config}


class TestFileSystemCatalog(FolderCatalogBinding):
    catalog_type = "file-system"


class TestContentFileSystemCatalog(FolderCatalogBinding):
    catalog_type = "content-fs"


class TestMinioCatalog(MinioCatalogBinding):
    catalog_type = "minio"


class TestContentMinioCatalog(MinioCatalogBinding):
    catalog_type = "content-minio"


# --- a third-party store -------------------------------------------------------------------


def test_the_example_plugin_passes_the_store_contract(installed_plugin: InstalledPlugin) -> None:
    """tests/plugin_example installed as a plugin author installs it, then its own test
    module (a StoreContract subclass) run by pytest: every test passes, none skips."""
    source, site = installed_plugin
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"],
        cwd=source,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    summary = report.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed in [\d.]+s.*", summary), report
