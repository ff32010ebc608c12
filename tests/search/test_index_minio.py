"""The run index of the object stores (minio, chunked-minio) against a real MinIO server: kept in
the user's cache folder, one file per endpoint, bucket and prefix, and every answer equal to a
read of every run, whoever wrote the runs (these stores, runnable 0.50's, a hand with a client).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from extensions.run_log_store.chunked_minio import ChunkedMinioRunLogStore as RunnableChunkedMinio
from minio import Minio
from minio.commonconfig import CopySource
from runnable import context as runnable_context
from runnable.datastore import JsonParameter as RunnableJsonParameter

from runlog_store import BaseRunLogStore, create_store
from runlog_store.callbacks import RecordingCallback
from runlog_store.search.sources import user_index_folder
from runlog_store.testing.store.search import write_runs

from .test_index import _ids, _indexed, assert_answers_equal_scan

KINDS = ["minio", "chunked-minio"]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


def _client(config: dict[str, str]) -> Minio:
    endpoint = urlsplit(config["endpoint_url"])
    return Minio(
        endpoint.netloc,
        access_key=config["aws_access_key_id"],
        secret_key=config["aws_secret_access_key"],
        secure=endpoint.scheme == "https",
    )


def _index_file(store: BaseRunLogStore) -> str:
    index = store._run_index()
    assert index is not None
    path = index.source.index_path()
    assert path is not None
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_object_stores_answer_as_their_scan(
    kind: str, minio_config: dict[str, str], cache: Path
) -> None:
    store = create_store(kind, **minio_config)
    write_runs(store)
    assert_answers_equal_scan(store)
    path = _index_file(store)
    assert path.startswith(str(cache / "runlog-store" / "index")) and os.path.isfile(path)
    assert path.startswith(user_index_folder())
    # another writer (another machine, say) changes, adds and deletes runs
    other = create_store(kind, **minio_config)
    other.update_run_log_status("search-3", "FAIL")
    other.create_run_log("from-elsewhere", tag="nightly")
    other.delete_run("search-1")
    assert_answers_equal_scan(store)
    assert _ids(store, "status = 'FAIL'") == ["search-2", "search-3"]
    assert "search-1" not in _ids(store) and "from-elsewhere" in _ids(store, "tag = 'nightly'")
    # nothing changed: nothing read, one listing
    quiet = RecordingCallback()
    store.search_runs(callback=quiet)
    assert _indexed(quiet) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_runs_copied_and_removed_by_hand(kind: str, minio_config: dict[str, str]) -> None:
    store = create_store(kind, **minio_config)
    write_runs(store)
    assert_answers_equal_scan(store)
    client, bucket = _client(minio_config), minio_config["bucket"]
    if kind == "minio":
        document = json.loads(client.get_object(bucket, "search-4.json").read())
        document["run_id"] = "copy-4"
        data = json.dumps(document).encode()
        client.put_object(bucket, "copy-4.json", io.BytesIO(data), len(data))
        client.copy_object(bucket, "copy-2.json", CopySource(bucket, "search-2.json"))
        client.remove_object(bucket, "search-5.json")
    else:
        for obj in client.list_objects(bucket, prefix="search-4/", recursive=True):
            name = obj.object_name.removeprefix("search-4/")
            if name == ".merged.json":
                continue
            if name == "RunLog":
                document = json.loads(client.get_object(bucket, obj.object_name).read())
                document["run_id"] = "copy-4"
                data = json.dumps(document).encode()
                client.put_object(bucket, "copy-4/RunLog", io.BytesIO(data), len(data))
            else:
                client.copy_object(bucket, f"copy-4/{name}", CopySource(bucket, obj.object_name))
        for obj in client.list_objects(bucket, prefix="search-2/", recursive=True):
            name = obj.object_name.removeprefix("search-2/")
            # its snapshot too: the copy must not read as search-2 itself
            client.copy_object(bucket, f"copy-2/{name}", CopySource(bucket, obj.object_name))
        for obj in client.list_objects(bucket, prefix="search-5/", recursive=True):
            client.remove_object(bucket, obj.object_name)
    assert_answers_equal_scan(store)
    assert "copy-4" in _ids(store, "status = 'SUCCESS'")
    assert _ids(store, "status = 'UNREADABLE'") == ["copy-2"]
    assert "search-5" not in _ids(store)


def test_one_index_per_endpoint_bucket_and_prefix(minio_config: dict[str, str]) -> None:
    def at(kind: str, prefix: str) -> BaseRunLogStore:
        return create_store(
            kind, **{**minio_config, "bucket": f"{minio_config['bucket']}/{prefix}"}
        )

    first, second, documents = at("chunked-minio", "a"), at("chunked-minio", "b"), at("minio", "a")
    assert len({_index_file(s) for s in (first, second, documents)}) == 3
    assert _index_file(first) == _index_file(at("chunked-minio", "a"))
    first.create_run_log("a-run")
    second.create_run_log("b-run")
    documents.create_run_log("doc-run")
    assert _ids(first) == ["a-run"] and _ids(second) == ["b-run"]
    assert _ids(documents) == ["doc-run"]


@dataclass(frozen=True)
class _RunContext:
    run_id: str


@contextmanager
def _runnable_run(run_id: str) -> Iterator[None]:
    """runnable's chunked-minio store finds its run's folder through the run context."""
    previous = runnable_context.get_run_context()
    runnable_context.set_run_context(_RunContext(run_id))  # type: ignore[arg-type]
    try:
        yield
    finally:
        runnable_context.set_run_context(previous)


def test_runs_written_by_runnable_chunked_minio(minio_config: dict[str, str]) -> None:
    _client(minio_config).make_bucket(minio_config["bucket"])
    theirs = RunnableChunkedMinio(**minio_config)
    for i, status in enumerate(("SUCCESS", "FAIL")):
        run_id = f"theirs-{i}"
        with _runnable_run(run_id):
            theirs.create_run_log(run_id, tag="nightly")
            theirs.set_parameters(
                run_id, {"lr": RunnableJsonParameter(kind="json", value=0.1 * (i + 1))}
            )
            step = theirs.create_step_log("train", "train")
            step.status = status
            theirs.add_step_log(step, run_id)
            theirs.update_run_log_status(run_id, status)
    ours = create_store("chunked-minio", **minio_config)
    assert_answers_equal_scan(ours)
    assert _ids(ours, "status = 'FAIL'") == ["theirs-1"]
    assert _ids(ours, "tag = 'nightly'") == ["theirs-0", "theirs-1"]
