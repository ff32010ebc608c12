"""Benchmarks side by side with runnable 0.50 in the same run; see benches/report.py for ratios."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator

import pytest
from tests.minio_server import MinioServer, required_minio_binary

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
