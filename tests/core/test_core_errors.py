"""Every error of the Rust core, raised through real ``_core`` calls: the exact exception class of
``runlog_store.exceptions``, its message, ``path``, ``run_id`` and ``errno``.

The core turns its errors into exceptions in one conversion (``PyCoreError`` in
``rust/python/errors.rs``) and imports each class it raises by name, so a class renamed on the
Python side must fail here (and at ``import runlog_store._core``), not at a real failure.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from runlog_store import _core, exceptions
from runlog_store.exceptions import (
    ChunkExistsError,
    ChunkNotFoundError,
    CorruptChunkError,
    HashError,
    LockTimeoutError,
    RunLogStoreError,
    StorageError,
)

NO_ERRNO = "no errno attribute"


def _raised(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as exc:  # the test checks the exact class below
        return exc
    raise AssertionError("the call raised nothing")


def _check(
    exc: BaseException,
    cls: type[BaseException],
    message: str,
    *,
    path: str,
    run_id: str,
    errno: int | str | None,
) -> None:
    assert type(exc) is cls, f"{type(exc).__name__}: {exc}"
    assert str(exc) == message
    assert isinstance(exc, RunLogStoreError)
    assert exc.path == path
    assert exc.run_id == run_id
    assert exc.message == message
    if errno == NO_ERRNO:
        assert not isinstance(exc, OSError)
        assert not hasattr(exc, "errno")
    else:
        assert isinstance(exc, OSError)
        assert exc.errno == errno
        assert exc.filename == path


# --- CoreError::Io: StorageError with the OS errno ---------------------------------------


def test_io_error_a_file_where_a_folder_is_expected(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "a.json"
    exc = _raised(lambda: _core.write_atomic(target, b"{}", run_id="run-1"))
    _check(
        exc,
        StorageError,
        f'create {target}: Not a directory (os error 20) (run "run-1")',
        path=str(target),
        run_id="run-1",
        errno=20,
    )


def test_io_error_reading_a_folder(tmp_path: Path) -> None:
    exc = _raised(lambda: _core.read_file(tmp_path, run_id="run-2"))
    _check(
        exc,
        StorageError,
        f'read {tmp_path}: Is a directory (os error 21) (run "run-2")',
        path=str(tmp_path),
        run_id="run-2",
        errno=21,
    )


def test_io_error_without_a_run_says_no_run(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    exc = _raised(lambda: _core.clean_temp_files(tmp_path / "file"))
    _check(
        exc,
        StorageError,
        f"list {tmp_path / 'file'}: Not a directory (os error 20)",
        path=str(tmp_path / "file"),
        run_id="",
        errno=20,
    )


def test_io_error_of_a_missing_file_to_hash_is_a_hash_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.bin"
    exc = _raised(lambda: _core.hash_file(missing))
    _check(
        exc,
        HashError,
        f"open {missing}: No such file or directory (os error 2)",
        path=str(missing),
        run_id="",
        errno=2,
    )
    [returned] = _core.hash_files([missing])
    assert isinstance(returned, BaseException)
    _check(
        returned,
        HashError,
        f"open {missing}: No such file or directory (os error 2)",
        path=str(missing),
        run_id="",
        errno=2,
    )


def test_io_error_of_a_missing_file_to_copy_is_a_storage_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.bin"
    [returned] = _core.copy_files([(missing, tmp_path / "out" / "x")], run_id="run-3")
    assert isinstance(returned, BaseException)
    _check(
        returned,
        StorageError,
        f'open {missing}: No such file or directory (os error 2) (run "run-3")',
        path=str(missing),
        run_id="run-3",
        errno=2,
    )
    assert not (tmp_path / "out" / "x").exists()


# --- CoreError::NotAFile: StorageError or HashError, no errno ------------------------------


def test_not_a_file_to_hash(tmp_path: Path) -> None:
    exc = _raised(lambda: _core.hash_file(tmp_path))
    _check(
        exc,
        HashError,
        f"{tmp_path}: is a directory, not a regular file",
        path=str(tmp_path),
        run_id="",
        errno=None,
    )


def test_not_a_file_to_copy(tmp_path: Path) -> None:
    source = tmp_path / "folder"
    source.mkdir()
    [returned] = _core.copy_files([(source, tmp_path / "copy")], run_id="run-4")
    assert isinstance(returned, BaseException)
    _check(
        returned,
        StorageError,
        f'{source}: is a directory, not a regular file (run "run-4")',
        path=str(source),
        run_id="run-4",
        errno=None,
    )


# --- CoreError::Corrupt: CorruptChunkError --------------------------------------------------


def test_corrupt_run_log_in_a_folder(tmp_path: Path) -> None:
    run_log = tmp_path / "RunLog.json"
    run_log.write_bytes(b'{"run_id":')
    exc = _raised(lambda: _core.merge_run(tmp_path, run_id="run-5"))
    _check(
        exc,
        CorruptChunkError,
        f"{run_log} is corrupt: it is not valid JSON "
        '(EOF while parsing a value at line 1 column 10) (run "run-5")',
        path=str(run_log),
        run_id="run-5",
        errno=NO_ERRNO,
    )


def test_corrupt_document_to_patch(tmp_path: Path) -> None:
    run_log = tmp_path / "RunLog.json"
    run_log.write_bytes(b"[1, 2]")
    exc = _raised(
        lambda: _core.patch_json(run_log, b'{"a":1}', lock_path=tmp_path / ".lock", run_id="r")
    )
    _check(
        exc,
        CorruptChunkError,
        f"{run_log} is corrupt: not a JSON object: invalid type: sequence, expected a map "
        'at line 1 column 0 (run "r")',
        path=str(run_log),
        run_id="r",
        errno=NO_ERRNO,
    )
    assert run_log.read_bytes() == b"[1, 2]"


def test_corrupt_chunk_header_in_memory() -> None:
    chunk = b'{"_created_ns":"x","internal_name":"a"}'
    exc = _raised(
        lambda: _core.merge_chunks(
            "s3://bucket/runs/r", b"{}", [("StepLog-a.json", chunk)], run_id="r"
        )
    )
    _check(
        exc,
        CorruptChunkError,
        's3://bucket/runs/r/StepLog-a.json is corrupt: "_created_ns" is not an integer (run "r")',
        path="s3://bucket/runs/r/StepLog-a.json",
        run_id="r",
        errno=NO_ERRNO,
    )


# --- CoreError::NotFound: ChunkNotFoundError ------------------------------------------------


def test_missing_run_folder(tmp_path: Path) -> None:
    run_log = tmp_path / "nope" / "RunLog.json"
    exc = _raised(lambda: _core.merge_run(tmp_path / "nope", run_id="run-6"))
    _check(
        exc,
        ChunkNotFoundError,
        f'{run_log} does not exist (run "run-6")',
        path=str(run_log),
        run_id="run-6",
        errno=NO_ERRNO,
    )


def test_missing_document_to_patch() -> None:
    exc = _raised(lambda: _core.apply_patch("runs/r/BranchLog-b.json", None, b"{}", run_id="r"))
    _check(
        exc,
        ChunkNotFoundError,
        'runs/r/BranchLog-b.json does not exist (run "r")',
        path="runs/r/BranchLog-b.json",
        run_id="r",
        errno=NO_ERRNO,
    )


# --- CoreError::Exists: ChunkExistsError ----------------------------------------------------


def test_exclusive_create_on_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "RunLog.json"
    _core.write_atomic(target, b"first", exclusive=True)
    exc = _raised(lambda: _core.write_atomic(target, b"second", exclusive=True, run_id="run-7"))
    _check(
        exc,
        ChunkExistsError,
        f'{target} already exists (run "run-7")',
        path=str(target),
        run_id="run-7",
        errno=NO_ERRNO,
    )
    assert target.read_bytes() == b"first"


# --- CoreError::LockTimeout: LockTimeoutError -----------------------------------------------

HOLD_LOCK = """
import sys, time
from runlog_store import _core
with _core.FileLock(sys.argv[1], 5.0):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        exc = _raised(lambda: _core.FileLock(lock, 0.1, "run-8").__enter__())
        _check(
            exc,
            LockTimeoutError,
            f'could not lock {lock} within 0.1 s: another writer holds it (run "run-8")',
            path=str(lock),
            run_id="run-8",
            errno=NO_ERRNO,
        )
        document = tmp_path / "RunLog.json"
        exc = _raised(
            lambda: _core.patch_json(
                document, b"{}", lock_path=lock, create=b"{}", lock_timeout=0.1, run_id="run-9"
            )
        )
        _check(
            exc,
            LockTimeoutError,
            f'could not lock {lock} within 0.1 s: another writer holds it (run "run-9")',
            path=str(lock),
            run_id="run-9",
            errno=NO_ERRNO,
        )
        assert not document.exists()
    finally:
        child.kill()
        child.wait()


# --- CoreError::InvalidArgument: ValueError -------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: _core.chunk_file_name("RunLog", "a"),  # type: ignore[arg-type]
            'unknown chunk kind "RunLog": expected "StepLog" or "BranchLog"',
        ),
        (lambda: _core.chunk_file_name("StepLog", ""), "an internal name must not be empty"),
        (
            lambda: _core.FileLock("x.lock", -1),
            "timeout must be a non-negative number of seconds, not -1",
        ),
        (
            lambda: _core.clean_temp_files(".", float("nan")),
            "older_than must be a non-negative number of seconds, not NaN",
        ),
        (
            lambda: _core.hash_file("x", "md5"),  # type: ignore[arg-type]
            'unknown hash algorithm "md5": expected "blake3" or "sha256"',
        ),
        (lambda: _core.hash_files([], jobs=0), "jobs must be at least 1"),
        (
            lambda: _core.apply_patch("d.json", b"{}", b"[1]"),
            "the patch is not a JSON object: invalid type: sequence, expected a map "
            "at line 1 column 0",
        ),
        (lambda: _core.temp_path("/"), "/ names no file"),
        (lambda: _core.ensure_dir(""), "an empty path names no folder"),
        (
            lambda: _core.chunk_with_header(1, b"[]"),
            "the chunk document is not a JSON object: it is not a JSON object",
        ),
        (
            lambda: _core.split_chunk_header(b'{"_created_ns":x,"a":1}'),
            'the chunk\'s "_created_ns" is not an integer: "x"',
        ),
    ],
)
def test_invalid_arguments_are_value_errors(call: Callable[[], object], message: str) -> None:
    exc = _raised(call)
    assert type(exc) is ValueError
    assert str(exc) == message


# --- ensure_dir -----------------------------------------------------------------------------


def test_ensure_dir_creates_every_missing_folder(tmp_path: Path) -> None:
    deep = tmp_path / "logs" / "run-1" / "data"
    _core.ensure_dir(deep)
    assert deep.is_dir()
    _core.ensure_dir(deep)  # existing folders are fine
    _core.ensure_dir(str(tmp_path / "other"), fsync=False, run_id="r")
    assert (tmp_path / "other").is_dir()


def test_ensure_dir_of_a_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _core.ensure_dir("a/b")
    assert (tmp_path / "a" / "b").is_dir()


@pytest.mark.parametrize("below", ["", "run-1", "run-1/data"])
def test_ensure_dir_names_the_file_in_the_way(tmp_path: Path, below: str) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file")
    exc = _raised(lambda: _core.ensure_dir(blocker / below, run_id="run-10"))
    _check(
        exc,
        StorageError,
        f'create folder {blocker}: Not a directory (os error 20) (run "run-10")',
        path=str(blocker),
        run_id="run-10",
        errno=20,
    )
    assert blocker.read_text() == "a file"


def test_copies_create_their_folders(tmp_path: Path) -> None:
    source = tmp_path / "data.csv"
    source.write_text("a,b\n")
    target = tmp_path / "catalog" / "run-1" / "deep" / "data.csv"
    [(digest, copied)] = _core.copy_files([(source, target)])  # type: ignore[misc]
    assert copied and target.read_text() == "a,b\n" and digest == _core.hash_file(source)


# --- the classes the core imports -----------------------------------------------------------


def test_every_class_the_core_raises_exists_in_exceptions() -> None:
    assert set(_core.RAISED_EXCEPTIONS) == {
        "StorageError",
        "HashError",
        "CorruptChunkError",
        "ChunkNotFoundError",
        "ChunkExistsError",
        "LockTimeoutError",
        "RunIdMismatchError",
        "NestingTooDeepError",
    }
    for name in _core.RAISED_EXCEPTIONS:
        cls = getattr(exceptions, name, None)
        assert isinstance(cls, type) and issubclass(cls, RunLogStoreError), name
        assert name in exceptions.__all__, name
        # The conversion passes these keywords; errno only to the StorageError family.
        if issubclass(cls, StorageError):
            storage = cls("message", path="p", run_id="r", errno=5)
            assert storage.errno == 5
            instance: RunLogStoreError = storage
        else:
            instance = cls("message", path="p", run_id="r")
        assert (instance.path, instance.run_id) == ("p", "r")


# The extension loaded by itself beside a stand-in for runlog_store.exceptions that lacks one
# class: the import must fail naming it (a fresh process: an extension initialises once).
LOAD_WITHOUT_CLASS = """
import importlib.util, sys, types
so_path, missing = sys.argv[1], sys.argv[2]
package = types.ModuleType("runlog_store")
package.__path__ = []
stand_in = types.ModuleType("runlog_store.exceptions")
for name in {names!r}:
    if name != missing:
        setattr(stand_in, name, type(name, (Exception,), {{}}))
sys.modules["runlog_store"] = package
sys.modules["runlog_store.exceptions"] = stand_in
spec = importlib.util.spec_from_file_location("runlog_store._core", so_path)
module = importlib.util.module_from_spec(spec)
try:
    spec.loader.exec_module(module)
except ImportError as exc:
    print("ImportError:", exc)
else:
    print("imported")
"""


@pytest.mark.parametrize("missing", ["", "ChunkExistsError"])
def test_a_renamed_class_fails_the_import(missing: str) -> None:
    script = textwrap.dedent(LOAD_WITHOUT_CLASS).format(names=list(_core.RAISED_EXCEPTIONS))
    so_path = _core.__file__
    assert so_path is not None and os.path.exists(so_path)
    result = subprocess.run(
        [sys.executable, "-c", script, so_path, missing],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    if not missing:
        assert result.stdout.strip() == "imported"
    else:
        assert result.stdout.strip() == (
            "ImportError: runlog_store._core raises runlog_store.exceptions.ChunkExistsError, "
            "which is not an exception class there"
        )


def _every_error() -> list[BaseException]:
    """One of each error type, made as the stores make them."""
    return [
        exceptions.RunLogNotFoundError("r", path="/logs/r"),
        exceptions.RunLogExistsError("r", path="/logs/r"),
        exceptions.StepLogNotFoundError("r", "s", path="/logs/r"),
        exceptions.BranchLogNotFoundError("r", "map.1", path="/logs/r"),
        exceptions.JobLogNotFoundError("r", path="/logs/r"),
        exceptions.ConfigurationError("bad key", key="log_folder", path="/c.yaml"),
        exceptions.InvalidRunIdError("../r", "it names a folder above"),
        exceptions.InvalidNameError("a..b", "an empty part", run_id="r"),
        exceptions.StorageError("disk full", path="/logs/r", run_id="r", errno=28),
        exceptions.HashError("gone", path="/data/x", errno=2),
        exceptions.CatalogError("no catalog", path="/c"),
        exceptions.NoMatchingFilesError("nothing matched data/*"),
        exceptions.CorruptChunkError("bad", path="/logs/r/RunLog.json", run_id="r"),
        exceptions.RunIdMismatchError("bad", path="/logs/r/RunLog.json", run_id="r", found="q"),
        exceptions.NestingTooDeepError("too deep", run_id="r"),
        exceptions.ChunkNotFoundError("gone", path="/logs/r"),
        exceptions.ChunkExistsError("there", path="/logs/r"),
        exceptions.LockTimeoutError("held", path="/logs/r/.lock", run_id="r"),
        exceptions.ObjectStorageError(
            "refused", path="b/r", run_id="r", endpoint="e:9000", bucket="b", operation="put"
        ),
    ]


@pytest.mark.parametrize("error", _every_error(), ids=lambda e: type(e).__name__)
def test_every_error_crosses_a_process_as_a_pickle(error: BaseException) -> None:
    """A Pool worker's error reaches its parent as a pickle: the same type, message and
    attributes (Python's default rebuild calls the type with its args, which our types do not
    take, and a Pool waits for ever on a result it cannot unpickle)."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error) and copy.args == error.args
    assert vars(copy) == vars(error)
    if isinstance(error, OSError):
        assert isinstance(copy, OSError)
        assert (copy.errno, copy.filename) == (error.errno, error.filename)


def test_an_error_of_the_core_crosses_a_process_as_a_pickle(tmp_path: Path) -> None:
    raised = _raised(lambda: _core.hash_file(tmp_path / "missing"))
    copy = pickle.loads(pickle.dumps(raised))
    assert type(copy) is type(raised) and str(copy) == str(raised)
    assert isinstance(copy, StorageError) and copy.errno == raised.errno == 2  # type: ignore[attr-defined]
    assert copy.path == raised.path  # type: ignore[attr-defined]
