"""Object storage (MinIO, S3) for the stores and the catalogs: the only module that imports the
``minio`` SDK. Stores and catalogs call :class:`Bucket`; nothing else sees a client.

What every object store here needs and the SDK leaves to its caller:

- **settings** in both spellings of the reference documents (runnable 0.50's ``endpoint_url``,
  ``aws_access_key_id``, ``aws_secret_access_key``, ``bucket``; the docs' ``endpoint``,
  ``access_key``, ``secret_key``, ``bucket_name``), a bucket that may carry a prefix
  (``runnable/run-logs``), credentials from the environment, secrets that never show (an
  endpoint with credentials in it, ``http://KEY:SECRET@host``, is refused without echoing
  them: summaries and errors print the endpoint);
- **bounded reads**: an object larger than the core's ``MAX_FILE_BYTES`` is refused before it
  is read, as the file stores refuse such a file (a bucket is shared too);
- **bounded retries**: a server that is unreachable, restarting or overloaded is retried with
  exponential backoff up to ``retries`` times, then the error names the endpoint, the bucket
  and the operation; wrong credentials fail at once, with no retries;
- **conditional writes** (``If-Match`` / ``If-None-Match``, which MinIO and S3 honour), the
  only way writers on different machines can update one object without losing each other's
  updates. The SDK has no public call for them, nor for a listing that skips its per-object
  parsing, so two private SDK calls are made, each in one function below
  (``_sdk_put_object``, ``_sdk_list_page``); ``sdk_signature_problems`` checks that the
  installed SDK still has the signatures they use (a test fails with its message otherwise),
  and the dependency is pinned to the SDK versions the tests ran.
"""

from __future__ import annotations

import inspect
import os
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit
from xml.etree import ElementTree

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import check_bucket_name
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from runlog_store import _core
from runlog_store.exceptions import (
    BucketNotFoundError,
    ConfigurationError,
    CorruptChunkError,
    LockTimeoutError,
    ObjectStorageAuthError,
    ObjectStorageError,
    ObjectStorageUnavailableError,
    PreconditionFailed,
)
from runlog_store.hashing import HashAlgorithm

T = TypeVar("T")

# The SDK's own default credentials are runnable's defaults too (a local MinIO).
DEFAULT_ENDPOINT = "http://localhost:9002"
_DEFAULT_KEY = "minioadmin"
_ENV_ACCESS_KEYS = ("MINIO_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER")
_ENV_SECRET_KEYS = ("MINIO_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD")

_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AllAccessDisabled",
    }
)
_RETRY_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "XMinioServerNotInitialized",
        "XMinioReadQuorum",
        "XMinioWriteQuorum",
        "OperationTimedOut",
    }
)
CREATE_TOKEN = "runlog-create"
_SPELLINGS = {
    "endpoint_url": "endpoint",
    "aws_access_key_id": "access_key",
    "aws_secret_access_key": "secret_key",
    "bucket": "bucket_name",
}


CREDENTIALS_IN_ENDPOINT = (
    "the endpoint must not carry credentials (user:password@host): they would show wherever "
    "the endpoint is printed; set aws_access_key_id and aws_secret_access_key (or "
    "MINIO_ACCESS_KEY and MINIO_SECRET_KEY in the environment) instead"
)


def _carries_credentials(endpoint: str) -> bool:
    """Whether an endpoint URL (with or without its scheme) has a user or password in it."""
    url = endpoint if "://" in endpoint else f"http://{endpoint}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "@" in endpoint
    return "@" in parts.netloc or parts.username is not None or parts.password is not None


class ObjectStorageSettings(BaseModel):
    """Connection settings shared by the object stores and the object catalog."""

    # A refused value is never echoed into an error: it may hold a secret.
    model_config = ConfigDict(hide_input_in_errors=True)

    def __init__(self, **data: Any) -> None:
        # Checked before pydantic sees the value, so the error is this typed one, not a
        # validation error (which would say the input, credentials included).
        for key in ("endpoint_url", "endpoint"):
            value = data.get(key)
            if isinstance(value, str) and _carries_credentials(value):
                raise ConfigurationError(CREDENTIALS_IN_ENDPOINT, key="endpoint_url")
        super().__init__(**data)

    endpoint_url: str = Field(
        default=DEFAULT_ENDPOINT, validation_alias=AliasChoices("endpoint_url", "endpoint")
    )
    aws_access_key_id: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("aws_access_key_id", "access_key")
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("aws_secret_access_key", "secret_key")
    )
    bucket: str = Field(default="runnable", validation_alias=AliasChoices("bucket", "bucket_name"))
    region: str | None = None
    secure: bool | None = Field(
        default=None, description="TLS; by default from the endpoint's scheme (https)"
    )
    cert_check: bool = True
    ca_bundle: str | None = Field(default=None, description="CA certificates file for TLS")
    create_bucket: bool = True
    retries: int = Field(default=6, ge=0, le=100)
    retry_backoff: float = Field(default=0.2, gt=0, le=60)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)

    _bucket: Bucket | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, alias in _SPELLINGS.items():
                if name in data and alias in data:
                    raise ValueError(f"{name!r} and {alias!r} are the same setting; set one")
        return data

    @field_validator("endpoint_url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        # Assigned later, or validated without __init__: refused all the same.
        if _carries_credentials(value):
            raise ValueError(CREDENTIALS_IN_ENDPOINT)
        return value

    @field_validator("bucket")
    @classmethod
    def _valid_bucket(cls, value: str) -> str:
        bucket = value.strip("/").partition("/")[0]
        try:
            check_bucket_name(bucket)
        except ValueError:
            raise ValueError(
                f"{bucket!r} is not a valid bucket name (3-63 characters: lower-case letters, "
                "digits, dots and hyphens, starting and ending with a letter or digit)"
            ) from None
        return value

    def bucket_and_prefix(self) -> tuple[str, str]:
        """``runnable/run-logs`` is bucket ``runnable`` with the prefix ``run-logs``."""
        full = self.bucket.strip("/")
        bucket, _, prefix = full.partition("/")
        if not bucket:
            raise ConfigurationError("the bucket must not be empty", key="bucket")
        return bucket, prefix.strip("/")

    def bucket_location(self) -> str:
        """Where the configured bucket and prefix are, for summaries (never credentials)."""
        bucket, prefix = self.bucket_and_prefix()
        return f"{self.endpoint_url}/{bucket}/{prefix}".rstrip("/")

    def storage(self) -> Bucket:
        """The bucket this configuration names, connected on first use."""
        if self._bucket is None:
            self._bucket = Bucket(self)
        return self._bucket


@dataclass(frozen=True)
class StoredObject:
    """An object (or, in a listing that is not recursive, a common prefix: ``is_prefix``)."""

    key: str
    size: int = 0
    modified: float | None = None
    etag: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    is_prefix: bool = False


def _stored(obj: Any) -> StoredObject:
    modified = obj.last_modified.timestamp() if obj.last_modified is not None else None
    metadata = {str(k).lower(): str(v) for k, v in (obj.metadata or {}).items()}
    return StoredObject(
        key=obj.object_name,
        size=obj.size or 0,
        modified=modified,
        etag=(obj.etag or "").strip('"'),
        metadata=metadata,
        is_prefix=bool(obj.is_dir),
    )


def _secret(configured: SecretStr | None, env_names: tuple[str, ...]) -> str:
    if configured is not None:
        return configured.get_secret_value()
    for name in env_names:
        value = os.environ.get(name)
        if value:
            return value
    return _DEFAULT_KEY


class Bucket:
    """One bucket and prefix of one server, with retries, error mapping and conditional PUTs."""

    def __init__(self, settings: ObjectStorageSettings) -> None:
        url = (
            settings.endpoint_url
            if "://" in settings.endpoint_url
            else (f"{'https' if settings.secure else 'http'}://{settings.endpoint_url}")
        )
        parts = urlsplit(url)
        if not parts.hostname:
            raise ConfigurationError(
                f"endpoint {settings.endpoint_url!r} names no host", key="endpoint_url"
            )
        secure = settings.secure if settings.secure is not None else parts.scheme == "https"
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.name, self.prefix = settings.bucket_and_prefix()
        self.settings = settings
        timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout)
        http = urllib3.PoolManager(
            timeout=timeout,
            maxsize=64,
            retries=False,
            cert_reqs="CERT_REQUIRED" if settings.cert_check else "CERT_NONE",
            ca_certs=settings.ca_bundle or os.environ.get("SSL_CERT_FILE") or None,
        )
        self._client = Minio(
            parts.netloc,
            access_key=_secret(settings.aws_access_key_id, _ENV_ACCESS_KEYS),
            secret_key=_secret(settings.aws_secret_access_key, _ENV_SECRET_KEYS),
            secure=secure,
            region=settings.region,
            http_client=http,
            cert_check=settings.cert_check,
        )
        self._ready = False

    def __repr__(self) -> str:
        return f"Bucket({self.endpoint}/{self.name}/{self.prefix})"

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def url(self, key: str = "") -> str:
        return f"{self.endpoint}/{self.name}/{key}" if key else f"{self.endpoint}/{self.name}"

    # --- the retry loop ---------------------------------------------------------------------

    def call(self, operation: str, key: str, action: Callable[[], T], *, run_id: str = "") -> T:
        """Run ``action`` with bounded retries; errors name endpoint, bucket and operation."""
        if not self._ready and operation != "check the bucket":
            self.ensure_bucket(run_id=run_id)
        where = self.url(key)

        def fail(cls: type[ObjectStorageError], message: str, code: str = "") -> ObjectStorageError:
            return cls(
                message,
                path=where,
                run_id=run_id,
                endpoint=self.endpoint,
                bucket=self.name,
                operation=operation,
                code=code,
            )

        attempts = self.settings.retries + 1
        started = time.monotonic()
        last: BaseException | None = None
        for attempt in range(attempts):
            try:
                return action()
            except S3Error as exc:
                code = exc.code or ""
                if code == "PreconditionFailed":
                    raise PreconditionFailed(
                        f"{where} changed meanwhile: the conditional {operation} was refused",
                        path=where,
                        run_id=run_id,
                    ) from None
                if code in _AUTH_CODES:
                    raise fail(
                        ObjectStorageAuthError,
                        f"{self.endpoint} refused the credentials for {operation} {where} "
                        f"({code}: {exc.message}); check the access key and secret key",
                        code,
                    ) from None
                if code == "NoSuchBucket":
                    self._ready = False
                    raise fail(
                        BucketNotFoundError,
                        f"bucket {self.name!r} does not exist at {self.endpoint} "
                        f"({operation} {where})",
                        code,
                    ) from None
                if code not in _RETRY_CODES and exc.response.status < 500:
                    raise fail(
                        ObjectStorageError,
                        f"{operation} {where} failed: {code}: {exc.message}",
                        code,
                    ) from None
                last = exc
            except (
                ServerError,
                InvalidResponseError,
                urllib3.exceptions.HTTPError,
                OSError,
            ) as exc:
                last = exc
            except MinioException as exc:
                raise fail(ObjectStorageError, f"{operation} {where} failed: {exc}") from None
            if attempt + 1 < attempts:
                pause = min(self.settings.retry_backoff * 2**attempt, 10.0)
                time.sleep(pause * (0.5 + random.random() / 2))
        waited = time.monotonic() - started
        raise fail(
            ObjectStorageUnavailableError,
            f"{self.endpoint} (bucket {self.name!r}): {operation} {where} failed after "
            f"{attempts} attempts over {waited:.1f} s: {_describe(last)}",
        )

    def ensure_bucket(self, *, run_id: str = "") -> None:
        """Create the bucket on first use (unless configured not to)."""
        exists = self.call("check the bucket", "", lambda: self._client.bucket_exists(self.name))
        if not exists:
            if not self.settings.create_bucket:
                raise BucketNotFoundError(
                    f"bucket {self.name!r} does not exist at {self.endpoint} and create_bucket "
                    "is false; create it or set create_bucket: true",
                    path=self.url(),
                    run_id=run_id,
                    endpoint=self.endpoint,
                    bucket=self.name,
                    operation="check the bucket",
                )
            try:
                self.call("check the bucket", "", lambda: self._client.make_bucket(self.name))
            except ObjectStorageError as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._ready = True

    # --- operations -------------------------------------------------------------------------

    def get(self, key: str, *, run_id: str = "") -> tuple[bytes, str] | None:
        """An object's bytes and ETag; None when it does not exist."""

        def fetch() -> tuple[bytes, str] | None:
            try:
                response = self._client.get_object(self.name, key)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise
            try:
                size = int(response.headers.get("Content-Length") or 0)
                if size > _core.MAX_FILE_BYTES:
                    raise _too_large(self.url(key), size, run_id)
                # Read at most one byte past the cap, whatever the length said.
                data = response.read(_core.MAX_FILE_BYTES + 1)
                if len(data) > _core.MAX_FILE_BYTES:
                    raise _too_large(self.url(key), len(data), run_id)
                etag = (response.headers.get("ETag") or "").strip('"')
            finally:
                response.close()
                response.release_conn()
            return data, etag

        return self.call("read", key, fetch, run_id=run_id)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        metadata: dict[str, str] | None = None,
        run_id: str = "",
    ) -> str:
        """Write a whole object in one PUT; PreconditionFailed if the condition does not hold.

        The SDK's public ``put_object`` turns unknown headers into user metadata, so the
        conditional headers go through its single-request ``_put_object`` (``_sdk_put_object``).
        """
        headers: dict[str, str | list[str] | tuple[str]] = {"Content-Type": "application/json"}
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        if if_none_match:
            headers["If-None-Match"] = "*"
        for name, value in (metadata or {}).items():
            headers[f"x-amz-meta-{name}"] = value

        def send() -> str:
            # The SDK changes the headers it is given: each attempt gets its own copy.
            return _sdk_put_object(self._client, self.name, key, data, dict(headers))

        return self.call("write", key, send, run_id=run_id)

    def stat(self, key: str, *, run_id: str = "") -> StoredObject | None:
        """The object's size, time, ETag and metadata; None when it does not exist."""

        def head() -> StoredObject | None:
            try:
                return _stored(self._client.stat_object(self.name, key))
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                    return None
                raise

        return self.call("check", key, head, run_id=run_id)

    def create(self, key: str, data: bytes, *, run_id: str = "") -> bool:
        """Write ``key`` only if it does not exist; False if it did.

        A create retried after a lost answer finds its own first try there: a token in the
        object's metadata tells it apart from an object someone else created.
        """
        token = uuid.uuid4().hex
        try:
            self.put(key, data, if_none_match=True, metadata={CREATE_TOKEN: token}, run_id=run_id)
        except PreconditionFailed:
            stat = self.stat(key, run_id=run_id)
            found = stat.metadata.get(f"x-amz-meta-{CREATE_TOKEN}") if stat else None
            return found == token
        return True

    def exists(self, key: str, *, run_id: str = "") -> bool:
        return self.stat(key, run_id=run_id) is not None

    def list_objects(
        self, prefix: str, *, recursive: bool = True, run_id: str = ""
    ) -> list[StoredObject]:
        """Objects (and, without ``recursive``, common prefixes) under ``prefix``."""
        return self.call(
            "list",
            prefix,
            lambda: [
                _stored(obj)
                for obj in self._client.list_objects(self.name, prefix=prefix, recursive=recursive)
            ],
            run_id=run_id,
        )

    def list_etags(self, prefix: str, *, run_id: str = "") -> dict[str, str]:
        """Every object under ``prefix`` with its ETag, by ListObjectsV2 pages parsed here:
        the SDK builds a full object (dates parsed and all) per entry, several times slower for
        the thousands of chunks of a big run, and a full read needs only names and ETags."""
        found: dict[str, str] = {}
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                query["continuation-token"] = token

            def page(query: dict[str, str] = query) -> bytes:
                return _sdk_list_page(self._client, self.name, dict(query))

            root = ElementTree.fromstring(self.call("list", prefix, page, run_id=run_id))
            truncated = False
            for element in root:
                tag = element.tag.rsplit("}", 1)[-1]
                if tag == "Contents":
                    key = etag = ""
                    for field in element:
                        name = field.tag.rsplit("}", 1)[-1]
                        if name == "Key":
                            key = field.text or ""
                        elif name == "ETag":
                            etag = (field.text or "").strip('"')
                    found[key] = etag
                elif tag == "IsTruncated":
                    truncated = (element.text or "").strip() == "true"
                elif tag == "NextContinuationToken":
                    token = element.text
            if not truncated:
                return found

    def get_many(self, keys: list[str], *, run_id: str = "") -> list[tuple[bytes, str] | None]:
        """Many objects fetched in parallel (network-bound: threads overlap the waits)."""
        if not keys:
            return []
        workers = min(32, len(keys))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda k: self.get(k, run_id=run_id), keys))

    def upload_file(
        self,
        key: str,
        path: str,
        *,
        algorithm: HashAlgorithm,
        part_size: int = 64 << 20,
        run_id: str = "",
    ) -> str:
        """Stream a file into ``key`` (multipart past ``part_size``), hashing the bytes as they
        are sent with the Rust core; the hex digest of exactly what was uploaded."""

        def send() -> str:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                reader = _HashingReader(handle, algorithm)
                self._client.put_object(
                    self.name,
                    key,
                    reader,  # type: ignore[arg-type]  # has read(): all put_object uses
                    size,
                    part_size=part_size,
                )
                return reader.hasher.hexdigest()

        return self.call("upload", key, send, run_id=run_id)

    def download_file(
        self, key: str, target: Path, *, algorithm: HashAlgorithm, run_id: str = ""
    ) -> str:
        """Fetch ``key`` into ``target``, hashing the bytes as they arrive; the hex digest.

        The bytes land in a temp file beside the target (the Rust writer's temp pattern, so
        listings skip it) and are renamed into place: a reader never sees half a file."""
        _core.ensure_dir(target.parent, run_id=run_id)
        temp = Path(_core.temp_path(target))

        def fetch() -> str:
            hasher = _core.Hasher(algorithm)
            response = self._client.get_object(self.name, key)
            try:
                with open(temp, "wb") as out:
                    for chunk in response.stream(1 << 20):
                        hasher.update(chunk)
                        out.write(chunk)
            finally:
                response.close()
                response.release_conn()
            return hasher.hexdigest()

        try:
            digest = self.call("download", key, fetch, run_id=run_id)
            os.replace(temp, target)
        finally:
            if temp.exists():
                temp.unlink()
        return digest

    def copy(self, source_key: str, target_key: str, *, run_id: str = "") -> None:
        """Copy an object within the bucket, on the server (no bytes pass through here)."""
        self.call(
            "copy",
            target_key,
            lambda: self._client.copy_object(
                self.name, target_key, CopySource(self.name, source_key)
            ),
            run_id=run_id,
        )

    def delete_prefix(self, prefix: str, *, run_id: str = "") -> int:
        names = [obj.key for obj in self.list_objects(prefix, run_id=run_id)]
        for name in names:
            self.delete(name, run_id=run_id)
        return len(names)

    def delete(self, key: str, *, run_id: str = "") -> None:
        self.call("delete", key, lambda: self._client.remove_object(self.name, key), run_id=run_id)


def _too_large(where: str, size: int, run_id: str) -> CorruptChunkError:
    """An object past the size a store reads: refused as a file of that size is."""
    return CorruptChunkError(
        f"{where} is {size} bytes, more than the {_core.MAX_FILE_BYTES} a store reads",
        path=where,
        run_id=run_id,
    )


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _HashingReader:
    """A file object that hashes what is read from it (an upload's single pass)."""

    def __init__(self, handle: BinaryIO, algorithm: HashAlgorithm) -> None:
        self._handle = handle
        self.hasher = _core.Hasher(algorithm)

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        if data:
            self.hasher.update(data)
        return data


# --- the SDK's private calls, one function each ---------------------------------------------

# The parameters each private call is made with; sdk_signature_problems checks them.
_PRIVATE_CALLS: dict[str, tuple[str, ...]] = {
    "_put_object": ("bucket_name", "object_name", "data", "headers"),
    "_execute": ("method", "bucket_name", "query_params"),
}


def _sdk_put_object(
    client: Minio, bucket: str, key: str, data: bytes, headers: dict[str, Any]
) -> str:
    """One PUT with exactly the headers given (conditional ones included); the new ETag."""
    result = client._put_object(bucket, key, data, headers=headers)
    return str(result.etag or "")


def _sdk_list_page(client: Minio, bucket: str, query: dict[str, str]) -> bytes:
    """One raw ListObjectsV2 page (XML), unparsed."""
    params: dict[str, str | list[str] | tuple[str]] = dict(query)
    response = client._execute("GET", bucket, query_params=params)
    return bytes(response.data)


def sdk_signature_problems() -> list[str]:
    """What the installed minio SDK lacks of the private calls made here (empty when all is
    well): a new SDK version that renamed or reshaped them is caught by a test, not in a run."""
    problems = []
    for name, wanted in _PRIVATE_CALLS.items():
        method = getattr(Minio, name, None)
        if method is None:
            problems.append(f"minio.Minio.{name} no longer exists")
            continue
        parameters = inspect.signature(method).parameters
        missing = [p for p in wanted if p not in parameters]
        if missing:
            problems.append(
                f"minio.Minio.{name} has no parameter {', '.join(missing)} "
                f"(its signature is now {inspect.signature(method)})"
            )
    return problems


# --- optimistic updates of one object ---------------------------------------------------------


def update_object(
    bucket: Bucket,
    key: str,
    change: Callable[[bytes | None], bytes],
    *,
    timeout: float,
    run_id: str = "",
) -> bytes:
    """Write ``change(current bytes or None)`` at ``key`` so that no concurrent update is lost:
    read the object with its ETag, change it, write it back only if it still has that ETag,
    and when another writer got there first, read again and retry (docs/format.md, "Object
    storage"). Returns the bytes written. ``change`` may run several times and must not have
    effects."""
    deadline = time.monotonic() + timeout
    pause = 0.002
    conflicts = 0
    while True:
        current = bucket.get(key, run_id=run_id)
        new = change(current[0] if current is not None else None)
        try:
            if current is None:
                bucket.put(key, new, if_none_match=True, run_id=run_id)
            else:
                bucket.put(key, new, if_match=current[1], run_id=run_id)
            return new
        except PreconditionFailed:
            conflicts += 1
        if time.monotonic() >= deadline:
            raise LockTimeoutError(
                f"could not update {bucket.url(key)} within {timeout:g} s: other writers changed "
                f"it {conflicts} times in a row",
                path=bucket.url(key),
                run_id=run_id,
            )
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, 0.25)
