"""The catalog API of runnable (``BaseCatalog``): files a step puts or gets, with content hashes.

A catalog keeps a copy of each file a step ``put`` under the run's folder, and copies files back
for a step that ``get``s them; each call returns ``DataCatalog`` entries (name, data_hash, paths,
stage) for the step's run log. Outside a runnable run, pass ``run_id=`` to each call.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from runlog_store._paths import validate_run_id
from runlog_store.exceptions import CatalogError, NoMatchingFilesError
from runlog_store.hashing import HashAlgorithm
from runlog_store.models import DataCatalog

# A progress bar is worth drawing from this many files or bytes on.
PROGRESS_MIN_FILES = 64
PROGRESS_MIN_BYTES = 256 << 20
# Work is handed to the Rust core in batches this big, so the bar moves between them.
BATCH_FILES = 256
BATCH_BYTES = 512 << 20
# The Rust writer's temp files are named ``.<name>.tmp-<pid>-...``.
TEMP_MARKER = ".tmp-"

T = TypeVar("T")


class BaseCatalog(ABC, BaseModel):
    """Base of every catalog; its pydantic fields are its YAML config keys."""

    service_name: str = ""
    service_type: str = "catalog"
    compute_data_folder: str = Field(default=".", min_length=1)
    hash_algorithm: HashAlgorithm = "blake3"

    model_config = ConfigDict(extra="forbid")

    @abstractmethod
    def get_summary(self) -> dict[str, Any]: ...

    @abstractmethod
    def get(self, name: str, *, run_id: str | None = None) -> list[DataCatalog]:
        """Copy the run's catalog files matching the glob ``name`` into the compute folder."""

    @abstractmethod
    def put(
        self,
        name: str,
        allow_file_not_found_exc: bool = False,
        store_copy: bool = True,
        *,
        run_id: str | None = None,
    ) -> list[DataCatalog]:
        """Hash (and, with ``store_copy``, copy into the catalog) the compute folder's files
        matching the glob ``name``."""

    @abstractmethod
    def sync_between_runs(self, previous_run_id: str, run_id: str) -> None:
        """Copy every catalog file of a previous run into this run's catalog (a retry)."""

    # --- a run's catalog as a whole: what copying and pruning runs need --------------------

    def run_files(self, run_id: str) -> dict[str, int]:
        """Every file of a run's catalog (its execution logs too), as POSIX paths relative to
        the run's folder, with their sizes; empty when the run has no catalog here."""
        raise CatalogError(f"the {self.service_name} catalog cannot list the files of a run")

    def download_run(self, run_id: str, folder: Path) -> int:
        """Copy every file of a run's catalog under ``folder`` (same relative paths); the
        number of bytes copied."""
        raise CatalogError(f"the {self.service_name} catalog cannot export the files of a run")

    def upload_run(self, run_id: str, folder: Path) -> int:
        """Copy every file under ``folder`` into a run's catalog (same relative paths); the
        number of bytes copied."""
        raise CatalogError(f"the {self.service_name} catalog cannot import the files of a run")

    def delete_run(self, run_id: str) -> int:
        """Remove a run's catalog; the number of files removed (0 when it had none)."""
        raise CatalogError(f"the {self.service_name} catalog cannot delete the files of a run")

    def local_run_folder(self, run_id: str) -> Path | None:
        """The folder holding a run's catalog when it is on this machine's file system, so it
        can be read in place instead of downloaded; None for remote catalogs."""
        return None

    def _put_sources(
        self, name: str, allow_file_not_found_exc: bool, run_id: str
    ) -> tuple[list[Path], list[Path], list[int]]:
        """The files a put of ``name`` takes: (paths, paths relative to the compute folder,
        sizes); empty when nothing matches and that is allowed."""
        source_root = Path(self.compute_data_folder)
        if not source_root.is_dir():
            raise CatalogError(
                f"compute data folder {source_root} does not exist (create it before a put)",
                path=str(source_root),
                run_id=run_id,
            )
        matches = glob_files(source_root, name, run_id)
        if not matches:
            if allow_file_not_found_exc:
                return [], [], []
            raise NoMatchingFilesError(
                f"no file matches {name!r} in {source_root}", path=str(source_root), run_id=run_id
            )
        relatives = [relative_inside(path, source_root, name) for path in matches]
        return matches, relatives, [file_size(path) for path in matches]

    def _run_id(self, run_id: str | None) -> str:
        """The run id given, else the one of the runnable run this is called in."""
        if run_id is None:
            run_id = _runnable_run_id()
        if run_id is None:
            raise CatalogError(
                f"{self.service_name} catalog: no run id; pass run_id= (outside a runnable run)"
            )
        return validate_run_id(run_id)


def _runnable_run_id() -> str | None:
    try:
        from runnable import context  # type: ignore[import-untyped]
    except ImportError:
        return None
    current = context.get_run_context()
    run_id = getattr(current, "run_id", None)
    return run_id if isinstance(run_id, str) and run_id else None


def on_terminal() -> bool:
    """Progress bars go to stderr, and only when a person watches it."""
    return Console(file=sys.stderr).is_terminal


def show_progress(files: int, size: int) -> bool:
    """A bar only on a terminal, and only for work big enough to watch."""
    if files < PROGRESS_MIN_FILES and size < PROGRESS_MIN_BYTES:
        return False
    return on_terminal()


def batches(sizes: Sequence[int]) -> Iterator[range]:
    """Consecutive index ranges of at most BATCH_FILES files or about BATCH_BYTES bytes."""
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and (index - start >= BATCH_FILES or total + size > BATCH_BYTES):
            yield range(start, index)
            start, total = index, 0
        total += size
    if start < len(sizes):
        yield range(start, len(sizes))


@contextmanager
def progress_bar(
    description: str, total: int, enabled: bool, *, counting: bool = False
) -> Iterator[Callable[[int], None]]:
    """A rich bar on stderr; yields ``advance(amount)``. ``total`` is bytes (a transfer bar
    with speed and time left), or a number of things with ``counting``."""
    if not enabled:
        yield lambda _: None
        return
    columns: tuple[ProgressColumn, ...] = (
        (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        if counting
        else (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
    )
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.advance(task, done)


def in_batches(
    description: str,
    items: Sequence[T],
    sizes: Sequence[int],
    work: Callable[[Sequence[T]], list[Any]],
) -> list[Any]:
    """Run ``work`` over ``items`` batch by batch, drawing progress on a terminal."""
    results: list[Any] = []
    enabled = show_progress(len(items), sum(sizes))
    with progress_bar(description, sum(sizes), enabled) as advance:
        for span in batches(sizes):
            results.extend(work(items[span.start : span.stop]))
            advance(sum(sizes[span.start : span.stop]))
    return results


def file_size(path: str | os.PathLike[str]) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def data_prefix(compute_data_folder: str) -> Path:
    """The compute folder's place inside a run's catalog folder, as runnable joins it on; an
    absolute or escaping folder would land outside the catalog, so only an inward one is kept
    (``.`` and those give no prefix)."""
    prefix = Path(os.path.normpath(compute_data_folder))
    if prefix.is_absolute() or prefix.parts[:1] == ("..",) or str(prefix) == ".":
        return Path()
    return prefix


def folder_files(root: Path) -> dict[str, int]:
    """Files under ``root`` (relative POSIX path -> size), temp files of writes in flight left
    out; empty when ``root`` does not exist."""
    found: dict[str, int] = {}
    if not root.is_dir():
        return found
    for path in sorted(root.rglob("*")):
        if path.is_file() and TEMP_MARKER not in path.name:
            found[path.relative_to(root).as_posix()] = path.stat().st_size
    return found


def glob_files(root: Path, pattern: str, run_id: str) -> list[Path]:
    """Every match but folders (as runnable does). A FIFO, socket or broken link is kept, so
    its copy fails with an error naming it instead of being skipped without a word."""
    try:
        return sorted(path for path in root.glob(pattern) if not path.is_dir())
    except (ValueError, NotImplementedError) as exc:
        raise CatalogError(
            f"{pattern!r} is not a usable glob pattern: {exc}", path=str(root), run_id=run_id
        ) from exc


def relative_inside(path: Path, root: Path, pattern: str) -> Path:
    """``path`` relative to ``root``; a CatalogError if the glob reached outside it."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        relative = Path("..")
    if ".." in relative.parts:
        raise CatalogError(
            f"pattern {pattern!r} matches {path}, outside {root}: catalog names must stay "
            "inside the folder"
        )
    return relative


__all__ = ["BaseCatalog"]
