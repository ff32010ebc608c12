"""Credentials written into an endpoint URL are refused with a typed error that does not show
them, by every object store and catalog, however the service is built."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter
from runnable import context as runnable_context

from runlog_store import create_catalog, create_store
from runlog_store.exceptions import ConfigurationError
from runlog_store.stores.minio import MinioRunLogStore

KEY, SECRET = "AKIAEXAMPLEKEY", "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRET"
ENDPOINTS = [
    f"http://{KEY}:{SECRET}@127.0.0.1:9000",
    f"https://{KEY}:{SECRET}@minio.example.com",
    f"{KEY}:{SECRET}@127.0.0.1:9000",
    f"http://{SECRET}@127.0.0.1:9000",
]


def _shows_nothing(error: BaseException) -> None:
    seen = "".join(
        [str(error), repr(error), str(error.__cause__ or ""), str(error.__context__ or "")]
    )
    assert SECRET not in seen and KEY not in seen, seen


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("spelling", ["endpoint_url", "endpoint"])
@pytest.mark.parametrize(
    "build",
    [
        lambda config: create_store("minio", **config),
        lambda config: create_store("chunked-minio", **config),
        lambda config: create_catalog("minio", **config),
        lambda config: create_catalog("content-minio", **config),
        lambda config: MinioRunLogStore(**config),
    ],
    ids=["minio", "chunked-minio", "minio catalog", "content-minio catalog", "constructor"],
)
def test_credentials_in_the_endpoint_are_refused_unseen(
    build: Any, spelling: str, endpoint: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        build({spelling: endpoint, "bucket": "runnable"})
    _shows_nothing(raised.value)
    assert raised.value.key == "endpoint_url"
    assert "credentials" in str(raised.value)


@pytest.mark.parametrize("namespace", ["run_log_store", "catalog"])
def test_through_runnables_plugin_group(namespace: str) -> None:
    annotated = (
        runnable_context.InstantiatedRunLogStore
        if namespace == "run_log_store"
        else runnable_context.InstantiatedCatalog
    )
    config = {"endpoint_url": ENDPOINTS[0], "bucket": "runnable"}
    with pytest.raises(Exception) as raised:  # runnable wraps what the plugin raised
        TypeAdapter(annotated).validate_python({"type": "runlog-minio", "config": config})
    # runnable's own message around it prints the configuration it was given; what the store
    # raised, its cause, says why without showing the credentials.
    cause = raised.value.__cause__
    assert cause is not None and "credentials" in str(cause), repr(raised.value)
    _shows_nothing(cause)


def test_a_plain_endpoint_is_still_accepted() -> None:
    store = create_store("minio", endpoint_url="http://127.0.0.1:9000", bucket="runnable")
    assert store.get_summary()["Location"] == "http://127.0.0.1:9000/runnable"
