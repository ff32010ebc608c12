"""Test fixtures: the runnable 0.50 run logs of tests/fixtures and stores of every type."""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from runlog_store import BaseRunLogStore, create_store

from .minio_server import MinioServer, required_minio_binary
from .postgres_server import PostgresServer, private_server, stop_on_sigterm

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_FIXTURES = ROOT / "tests" / "fixtures"


def _fixtures_copy() -> Path:
    """The tests read a copy of the committed fixtures: reading a chunked run stores its merge
    beside it (.merged.json), and the repository's copies must stay as the script made them."""
    scratch = Path(tempfile.mkdtemp(prefix="runlog-fixtures-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return Path(shutil.copytree(COMMITTED_FIXTURES, scratch / "fixtures"))


FIXTURES = _fixtures_copy()
RUNNABLE_FIXTURES = FIXTURES / "runnable-0.50"
SEED_FIXTURES = FIXTURES / "seed-layout"

OBJECT_TYPES = ["minio", "chunked-minio"]
DATABASE_TYPES = ["postgres"]
SERVER_TYPES = [*OBJECT_TYPES, *DATABASE_TYPES]  # stores that take a server, not a folder
STORE_TYPES = ["buffered", "file-system", "chunked-fs", *SERVER_TYPES]
PERSISTENT_TYPES = ["file-system", "chunked-fs", *SERVER_TYPES]


def make_store(type_name: str, folder: Path, **config: object) -> BaseRunLogStore:
    """A store of any type; server stores take their server settings in ``config``
    (``store_config``), the others a folder."""
    if type_name == "buffered" or type_name in SERVER_TYPES:
        return create_store(type_name, **config)
    config.setdefault("fsync", False)
    return create_store(type_name, log_folder=str(folder), **config)


def store_config(request: pytest.FixtureRequest, type_name: str) -> dict[str, Any]:
    """The settings a server store needs: a real MinIO server and a fresh bucket, or the
    session's PostgreSQL cluster and a fresh schema."""
    if type_name in OBJECT_TYPES:
        return dict(request.getfixturevalue("minio_config"))
    if type_name in DATABASE_TYPES:
        return dict(request.getfixturevalue("postgres_config"))
    return {}


@pytest.fixture(params=STORE_TYPES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BaseRunLogStore:
    return make_store(request.param, tmp_path / "logs", **store_config(request, request.param))


@pytest.fixture(params=PERSISTENT_TYPES)
def persistent_store(request: pytest.FixtureRequest, tmp_path: Path) -> BaseRunLogStore:
    return make_store(request.param, tmp_path / "logs", **store_config(request, request.param))


@pytest.fixture
def store_factory(tmp_path: Path) -> Iterator[Callable[..., BaseRunLogStore]]:
    def factory(type_name: str, **config: object) -> BaseRunLogStore:
        return make_store(type_name, tmp_path / "logs", **config)

    yield factory


# --- MinIO: the object-storage tests run against a real server (tests/minio_server.py) ---


@pytest.fixture(scope="session")
def minio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    """One real MinIO server for the whole session (built once by scripts/minio.sh).

    Without a binary (no Go toolchain, failed build) the object-storage tests skip on a
    developer machine but fail in CI, where every integration test must run.
    """
    binary = required_minio_binary()
    server = MinioServer(binary, tmp_path_factory.mktemp("minio"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def minio_bucket() -> str:
    """A fresh bucket name per test, not created: the stores create their bucket on first use."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def minio_config(minio_server: MinioServer, minio_bucket: str) -> dict[str, str]:
    """The store config keys (runnable's chunked-minio names) for the test server and bucket."""
    return {
        "endpoint_url": minio_server.endpoint,
        "aws_access_key_id": minio_server.access_key,
        "aws_secret_access_key": minio_server.secret_key,
        "bucket": minio_bucket,
    }


# --- PostgreSQL: the postgres store's tests run on a private cluster (tests/postgres_server.py) ---


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL cluster for the whole session (Debian's server, installed by
    scripts/postgres.sh), removed at the end, or at the exit of a pytest ended by SIGTERM.

    Without the server the PostgreSQL tests skip on a developer machine but fail in CI.
    """
    stop_on_sigterm()
    with private_server() as server:
        yield server


@pytest.fixture
def postgres_config(postgres_server: PostgresServer) -> dict[str, Any]:
    """The postgres store's config keys for the test cluster, in a fresh schema per test (the
    store creates it at first use)."""
    return {
        "host": postgres_server.host,
        "port": postgres_server.port,
        "dbname": postgres_server.dbname,
        "user": postgres_server.user,
        "password": postgres_server.password,
        "schema_name": f"t_{uuid.uuid4().hex[:12]}",
    }


# --- the example third-party store package (tests/plugin_example) ------------------------------


class InstalledPlugin(NamedTuple):
    source: Path  # a copy of tests/plugin_example (its own tests run from here)
    site: Path  # where it is installed: put it on PYTHONPATH


@pytest.fixture(scope="session")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> InstalledPlugin:
    """tests/plugin_example installed as a plugin author installs it (into a target folder)."""
    # Built from a copy: a build in place would leave build/ and egg-info in the source tree.
    source = Path(
        shutil.copytree(
            ROOT / "tests" / "plugin_example", tmp_path_factory.mktemp("plugin") / "plugin_example"
        )
    )
    site = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
    )
    return InstalledPlugin(source, site)


def write_config(path: Path, store_type: str, folder: Path | str) -> Path:
    """A runlog configuration file: a store of ``store_type`` in ``folder`` (fsync off) and a
    file-system catalog beside the file."""
    path.write_text(
        yaml.safe_dump(
            {
                "run-log-store": {
                    "type": store_type,
                    "config": {"log_folder": str(folder), "fsync": False},
                },
                "catalog": {
                    "type": "file-system",
                    "config": {"catalog_location": str(path.parent / "catalog")},
                },
            }
        )
    )
    return path
