"""Benchmarks side by side with runnable 0.50 in the same run; see benches/report.py for ratios."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.minio_server import MinioServer, required_minio_binary

from .disk_probe import probe

# The runnable banner on import is noise in benchmark output.
sys.stdout.flush()
os.environ.setdefault("RUNNABLE_TELEMETRY", "0")


# A real MinIO server for the object-storage benchmarks (tests/minio_server.py; the binary is
# built once by scripts/minio.sh). Same rules as the tests: skip without it, fail in CI.


@pytest.fixture(scope="session")
def minio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    """One MinIO server for the whole benchmark session, on its own data directory."""
    binary = required_minio_binary()
    with MinioServer(binary, tmp_path_factory.mktemp("minio")) as server:
        yield server


@pytest.fixture
def minio_config(minio_server: MinioServer) -> dict[str, str]:
    """Store config keys (runnable's chunked-minio names) for a fresh, not yet created bucket."""
    return {
        "endpoint_url": minio_server.endpoint,
        "aws_access_key_id": minio_server.access_key,
        "aws_secret_access_key": minio_server.secret_key,
        "bucket": f"b-{uuid.uuid4().hex[:12]}",
    }


# A scratch folder on the disk under test (the working folder, not /tmp, which may be tmpfs),
# with a probe of that disk's state recorded beside every write benchmark's result. Modules
# that need another name for their folder define their own ``scratch``.


@pytest.fixture(scope="module")
def scratch() -> Any:
    folder = Path(tempfile.mkdtemp(prefix="runlog-bench-", dir=Path.cwd()))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def disk(scratch: Path) -> str:
    """The state of the disk under the scratch folder as this module starts."""
    line = probe(scratch).line()
    print(f"\n{line}")
    return line


@pytest.fixture
def noted(benchmark: Any, disk: str) -> Any:
    benchmark.extra_info["disk_probe"] = disk
    return benchmark
