"""Typed errors of runlog-store.

Every error a store raises on purpose derives from :class:`RunLogStoreError`, so callers can
catch the whole family in one place. The names of the "not found" / "exists" errors are the
ones runnable uses, so code written against runnable's stores reads the same.

Errors that come from storage carry ``path`` (the file or object involved) and ``run_id``, the
two things an operator needs to find what went wrong. The Rust core raises the storage errors
below directly, with those attributes set.
"""

from __future__ import annotations

from typing import Any

# What an OSError keeps outside its __dict__, carried through a pickle by hand.
_OS_ERROR_FIELDS = ("errno", "strerror", "filename", "filename2")


def _unpickled(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """An error as it was pickled: its type, args and attributes, without calling __init__
    (whose parameters are not its args)."""
    error = cls.__new__(cls, *args)
    error.args = args  # OSError.__new__ leaves them to an __init__ of a subclass
    for name, value in state.items():
        setattr(error, name, value)
    return error


class RunLogStoreError(Exception):
    """Base of every error raised by runlog-store."""

    def __init__(self, message: str, *, path: str = "", run_id: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.run_id = run_id

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross processes as pickles: a runnable Pool worker's error goes back to the
        # pipeline's process so. Python's default rebuilds an error by calling its type with
        # its args, which our __init__s do not take (a "not found" error is made from a run id
        # and a name): the unpickling failed in the parent and the Pool waited for the result
        # for ever, the pipeline hung instead of failing.
        state = dict(vars(self))
        if isinstance(self, OSError):
            state.update({name: getattr(self, name) for name in _OS_ERROR_FIELDS})
        return (_unpickled, (type(self), self.args, state))


class RunLogNotFoundError(RunLogStoreError):
    def __init__(self, run_id: str, *, path: str = "") -> None:
        where = f" (looked at {path})" if path else ""
        super().__init__(
            f"Run log for run id {run_id!r} is not found in the store{where}",
            path=path,
            run_id=run_id,
        )


class RunLogExistsError(RunLogStoreError):
    def __init__(self, run_id: str, *, path: str = "") -> None:
        super().__init__(
            f"Run log for run id {run_id!r} already exists in the store", path=path, run_id=run_id
        )


class StepLogNotFoundError(RunLogStoreError):
    def __init__(self, run_id: str, step_name: str, *, path: str = "") -> None:
        super().__init__(
            f"Step log {step_name!r} is not found in run {run_id!r}", path=path, run_id=run_id
        )
        self.step_name = step_name


class BranchLogNotFoundError(RunLogStoreError):
    def __init__(self, run_id: str, branch_name: str, *, path: str = "") -> None:
        super().__init__(
            f"Branch log {branch_name!r} is not found in run {run_id!r}", path=path, run_id=run_id
        )
        self.branch_name = branch_name


class JobLogNotFoundError(RunLogStoreError):
    def __init__(self, run_id: str, *, path: str = "") -> None:
        super().__init__(f"Run {run_id!r} has no job log", path=path, run_id=run_id)


class ConfigurationError(RunLogStoreError, ValueError):
    """A store or catalog configuration is wrong: unknown type, unknown key, bad value.

    ``key`` names the offending configuration key when there is one.
    """

    def __init__(self, message: str, *, key: str = "", path: str = "") -> None:
        super().__init__(message, path=path)
        self.key = key


class InvalidRunIdError(RunLogStoreError, ValueError):
    """A run id that could not be stored safely (it would leave the log folder, or is empty)."""

    def __init__(self, run_id: str, reason: str) -> None:
        super().__init__(f"Invalid run id {run_id!r}: {reason}", run_id=run_id)
        self.reason = reason


class InvalidNameError(RunLogStoreError, ValueError):
    """A step or branch internal name that cannot be stored (empty, not a string...)."""

    def __init__(self, name: object, reason: str, *, run_id: str = "") -> None:
        super().__init__(f"Invalid internal name {name!r}: {reason}", run_id=run_id)
        self.name = name
        self.reason = reason


# --- storage errors: raised by the Rust core, always with path and run_id -----------------


class StorageError(RunLogStoreError, OSError):
    """Reading or writing storage failed (disk full, permission denied, I/O error...).

    It is also an ``OSError`` so generic handlers still catch it; ``errno`` is set when the
    operating system gave one.
    """

    def __init__(
        self, message: str, *, path: str = "", run_id: str = "", errno: int | None = None
    ) -> None:
        RunLogStoreError.__init__(self, message, path=path, run_id=run_id)
        self.args = (message,)
        self.errno = errno
        self.filename = path

    def __str__(self) -> str:
        return self.message


class HashError(StorageError):
    """A file could not be hashed: missing, unreadable, a directory or special file, or it
    changed while it was read. ``path`` names it; batch hashing returns these per file."""


class CatalogError(RunLogStoreError):
    """A catalog operation could not be done (no compute data folder, no previous run...)."""


class NoMatchingFilesError(CatalogError):
    """A catalog ``get`` or ``put`` pattern matched no file."""


class CorruptChunkError(RunLogStoreError):
    """A stored chunk or run log file is not valid JSON of the expected shape.

    The path names the file; ``salvage_run_log`` reads the rest of the run without it.
    """


class RunIdMismatchError(CorruptChunkError):
    """The document read for run ``asked`` says it is run ``found``: a file copied or written
    under another run's name. It is refused rather than handed out as the run asked for (a
    copy would otherwise write it over run ``found``). ``path`` names the document."""

    def __init__(
        self, message: str = "", *, path: str = "", run_id: str = "", found: str = ""
    ) -> None:
        if not message:
            message = (
                f"{path or 'the run log'} says it is run {found!r}, not run {run_id!r} "
                "that was asked for"
            )
        super().__init__(message, path=path, run_id=run_id)
        self.asked = run_id
        self.found = found


class NestingTooDeepError(RunLogStoreError, ValueError):
    """A write that would make the run log nest deeper than every reader reads back (the
    core's ``MAX_NESTING`` levels of JSON objects and arrays): it is refused, so what a store
    acknowledges always reads back. The message names the run, the step or branch and the
    place (a parameter, say) that is too deep."""


class ChunkNotFoundError(RunLogStoreError):
    """A chunk the operation needs does not exist (the stores turn it into a typed not-found)."""


class ChunkExistsError(RunLogStoreError):
    """An exclusive create found the target already there."""


class LockTimeoutError(RunLogStoreError):
    """Another process held the run's lock for longer than the configured timeout."""


# --- object storage: raised by runlog_store.objectstore ---------------------------------


class ObjectStorageError(StorageError):
    """An object storage operation failed; the message names endpoint, bucket and operation."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        run_id: str = "",
        endpoint: str = "",
        bucket: str = "",
        operation: str = "",
        code: str = "",
    ) -> None:
        super().__init__(message, path=path, run_id=run_id)
        self.endpoint = endpoint
        self.bucket = bucket
        self.operation = operation
        self.code = code


class ObjectStorageUnavailableError(ObjectStorageError):
    """The server could not be reached (or kept failing) within the retry budget."""


class ObjectStorageAuthError(ObjectStorageError):
    """The server refused the credentials: not retried."""


class BucketNotFoundError(ObjectStorageError):
    """The bucket does not exist and the configuration says not to create it."""


class PreconditionFailed(RunLogStoreError):
    """A conditional write lost the race: the object changed (or appeared) meanwhile. The
    stores retry on it; it reaches a caller only from ``objectstore.Bucket.put`` itself."""


__all__ = [
    "BranchLogNotFoundError",
    "BucketNotFoundError",
    "CatalogError",
    "ChunkExistsError",
    "ChunkNotFoundError",
    "ConfigurationError",
    "CorruptChunkError",
    "HashError",
    "InvalidNameError",
    "InvalidRunIdError",
    "JobLogNotFoundError",
    "LockTimeoutError",
    "NestingTooDeepError",
    "NoMatchingFilesError",
    "ObjectStorageAuthError",
    "ObjectStorageError",
    "ObjectStorageUnavailableError",
    "PreconditionFailed",
    "RunIdMismatchError",
    "RunLogExistsError",
    "RunLogNotFoundError",
    "RunLogStoreError",
    "StepLogNotFoundError",
    "StorageError",
]
