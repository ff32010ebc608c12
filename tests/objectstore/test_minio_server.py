"""The MinIO test infrastructure itself, against the real server: it answers, keeps its data
across a graceful restart and a SIGKILL, and enforces the conditional writes (If-None-Match,
If-Match) the object stores rely on for lost-update-free writes.

These tests also pin down how to send conditional headers with minio-py 7.2.20, whose public
``put_object`` has no ``headers`` parameter (see ``conditional_put``).
"""

from __future__ import annotations

import io
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio
from minio.error import S3Error
from minio.helpers import ObjectWriteResult

from ..minio_server import MinioServer, MinioServerError, minio_binary


def client_for(server: MinioServer) -> Minio:
    return Minio(
        server.host_port,
        access_key=server.access_key,
        secret_key=server.secret_key,
        secure=False,
    )


def conditional_put(
    client: Minio, bucket: str, key: str, data: bytes, **conditions: str
) -> ObjectWriteResult:
    """A single-request PutObject with extra HTTP headers (``If_None_Match="*"`` etc.).

    minio-py 7.2.20's public ``put_object`` cannot send them: its only header-like parameter,
    ``metadata``, turns every header that is not ``x-amz-*``/``Content-*``/``Cache-Control``
    into user metadata (``If-None-Match`` becomes ``x-amz-meta-if-none-match`` and the write
    is unconditional; see the test below). ``Minio._put_object`` is the one-part PUT that
    ``put_object`` itself calls; it signs and sends the headers as given. Keyword names use
    ``_`` for ``-``. Raises S3Error (code ``PreconditionFailed``, HTTP 412) when refused.
    """
    headers: dict[str, str | list[str] | tuple[str]] = {"Content-Type": "application/octet-stream"}
    headers.update({name.replace("_", "-"): value for name, value in conditions.items()})
    return client._put_object(bucket, key, data, headers=headers)


@pytest.fixture
def client(minio_server: MinioServer) -> Minio:
    return client_for(minio_server)


@pytest.fixture
def bucket(client: Minio, minio_bucket: str) -> str:
    client.make_bucket(minio_bucket)
    return minio_bucket


@pytest.fixture
def own_server(tmp_path: Path, minio_server: MinioServer) -> Iterator[MinioServer]:
    """A server of this test's own (restarted and killed here without disturbing others).

    Depends on ``minio_server`` only so that it skips/fails exactly like the shared one.
    """
    with MinioServer(minio_binary(), tmp_path / "own") as server:
        yield server


def read(client: Minio, bucket: str, key: str) -> bytes:
    response = client.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def test_server_answers(minio_server: MinioServer, minio_config: dict[str, str]) -> None:
    with urllib.request.urlopen(minio_server.endpoint + "/minio/health/live", timeout=5) as r:
        assert r.status == 200
    assert minio_server.endpoint == f"http://127.0.0.1:{minio_server.port}"
    assert minio_server.host_port == f"127.0.0.1:{minio_server.port}"
    assert len(minio_server.secret_key) >= 24
    assert minio_config["endpoint_url"] == minio_server.endpoint
    assert minio_config["bucket"].startswith("t-")
    client = client_for(minio_server)
    assert not client.bucket_exists(minio_config["bucket"])
    client.make_bucket(minio_config["bucket"])
    assert client.bucket_exists(minio_config["bucket"])


def test_wrong_credentials_are_refused(minio_server: MinioServer, minio_bucket: str) -> None:
    intruder = Minio(minio_server.host_port, "nobody", "not-the-password", secure=False)
    with pytest.raises(S3Error) as refused:
        intruder.make_bucket(minio_bucket)
    assert refused.value.code == "InvalidAccessKeyId"


def test_data_survives_a_restart(own_server: MinioServer, minio_bucket: str) -> None:
    client = client_for(own_server)
    client.make_bucket(minio_bucket)
    client.put_object(minio_bucket, "run/RunLog", io.BytesIO(b"kept"), 4)
    pid, port = own_server.pid, own_server.port

    own_server.restart()

    assert own_server.is_running()
    assert own_server.pid != pid
    assert own_server.port == port
    assert read(client_for(own_server), minio_bucket, "run/RunLog") == b"kept"


def test_kill_then_start(own_server: MinioServer, minio_bucket: str) -> None:
    client = client_for(own_server)
    client.make_bucket(minio_bucket)
    client.put_object(minio_bucket, "acknowledged", io.BytesIO(b"before the crash"), 16)

    own_server.kill()

    assert not own_server.is_running()
    with pytest.raises(Exception):  # noqa: B017 - any connection error: nothing listens
        Minio(
            own_server.host_port, own_server.access_key, own_server.secret_key, secure=False
        ).bucket_exists(minio_bucket)
    own_server.start()
    assert read(client_for(own_server), minio_bucket, "acknowledged") == b"before the crash"


def test_a_server_that_cannot_start_reports_its_log(
    tmp_path: Path, minio_server: MinioServer
) -> None:
    """MinIO refuses a root password under 8 characters and exits: the error has its log."""
    broken = MinioServer(minio_server.binary, tmp_path / "broken", secret_key="short")
    with pytest.raises(MinioServerError, match="exited with code") as failed:
        broken.start()
    assert "log tail" in str(failed.value)
    assert "MINIO_ROOT_PASSWORD" in str(failed.value)
    assert not broken.is_running()


def test_a_taken_port_is_refused_not_shared(tmp_path: Path, own_server: MinioServer) -> None:
    """MinIO listens with SO_REUSEPORT: a second server on a taken port would start and share
    it. start() refuses instead, so a restart never talks to a leftover server."""
    clash = MinioServer(own_server.binary, tmp_path / "clash")
    clash.port = own_server.port
    with pytest.raises(MinioServerError, match="already in use"):
        clash.start()
    assert not clash.is_running()
    assert own_server.is_running()


def test_if_none_match_star_creates_only_once(client: Minio, bucket: str) -> None:
    created = conditional_put(client, bucket, "chunk", b"first", If_None_Match="*")
    assert created.etag

    with pytest.raises(S3Error) as refused:
        conditional_put(client, bucket, "chunk", b"second", If_None_Match="*")

    assert refused.value.response.status == 412
    assert refused.value.code == "PreconditionFailed"
    assert read(client, bucket, "chunk") == b"first"


def test_if_match_needs_the_current_etag(client: Minio, bucket: str) -> None:
    first = client.put_object(bucket, "RunLog", io.BytesIO(b"v1"), 2)
    assert first.etag and '"' not in first.etag  # minio-py strips the quotes

    with pytest.raises(S3Error) as refused:
        conditional_put(client, bucket, "RunLog", b"v2", If_Match="0" * 32)
    assert refused.value.response.status == 412
    assert refused.value.code == "PreconditionFailed"
    assert read(client, bucket, "RunLog") == b"v1"

    second = conditional_put(client, bucket, "RunLog", b"v2", If_Match=first.etag)
    assert second.etag != first.etag
    assert read(client, bucket, "RunLog") == b"v2"

    # The etag is stale now: a writer that read v1 loses, it cannot overwrite v2.
    with pytest.raises(S3Error) as stale:
        conditional_put(client, bucket, "RunLog", b"v1-again", If_Match=first.etag)
    assert stale.value.code == "PreconditionFailed"

    # Quoted, as in HTTP, works as well.
    conditional_put(client, bucket, "RunLog", b"v3", If_Match=f'"{second.etag}"')
    assert read(client, bucket, "RunLog") == b"v3"


def test_if_match_on_a_missing_key_is_not_found(client: Minio, bucket: str) -> None:
    """If-Match never creates: on a missing key MinIO answers 404 NoSuchKey (AWS does too)."""
    with pytest.raises(S3Error) as missing:
        conditional_put(client, bucket, "absent", b"x", If_Match="0" * 32)
    assert missing.value.response.status == 404
    assert missing.value.code == "NoSuchKey"
    assert "absent" not in {o.object_name for o in client.list_objects(bucket)}


def test_racing_creators_exactly_one_wins(client: Minio, bucket: str) -> None:
    """Many writers, one If-None-Match: * key: the server lets exactly one through."""
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def create(i: int) -> None:
        start.wait()
        try:
            conditional_put(client, bucket, "lock", str(i).encode(), If_None_Match="*")
            outcome = f"won:{i}"
        except S3Error as exc:
            outcome = str(exc.code)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [o for o in outcomes if o.startswith("won:")]
    assert len(winners) == 1, outcomes
    assert set(outcomes) - set(winners) <= {"PreconditionFailed", "ConditionalRequestConflict"}
    assert read(client, bucket, "lock") == winners[0].removeprefix("won:").encode()


def test_conditions_passed_as_metadata_are_not_conditions(client: Minio, bucket: str) -> None:
    """The trap: put_object(metadata={"If-None-Match": "*"}) is an unconditional overwrite."""
    client.put_object(bucket, "chunk", io.BytesIO(b"first"), 5)
    client.put_object(bucket, "chunk", io.BytesIO(b"second"), 6, metadata={"If-None-Match": "*"})
    assert read(client, bucket, "chunk") == b"second"
    stat = client.stat_object(bucket, "chunk")
    assert stat.metadata is not None
    assert stat.metadata.get("x-amz-meta-if-none-match") == "*"
