"""``do-nothing``: a catalog that records and copies nothing (runnable's default for tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runlog_store.callbacks import NO_PROGRESS, Callback
from runlog_store.catalogs.base import BaseCatalog, StoredFile, folder_files
from runlog_store.exceptions import CatalogError
from runlog_store.models import DataCatalog


class DoNothingCatalog(BaseCatalog):
    """Every put and get returns no entries and touches no file, as runnable's does."""

    service_name: str = "do-nothing"

    def location(self) -> str:
        return ""

    def get_summary(self) -> dict[str, Any]:
        return {"Type": self.service_name}

    def put(
        self,
        name: str,
        allow_file_not_found_exc: bool = False,
        store_copy: bool = True,
        *,
        run_id: str | None = None,
        callback: Callback = NO_PROGRESS,
    ) -> list[DataCatalog]:
        return []

    def get(
        self, name: str, *, run_id: str | None = None, callback: Callback = NO_PROGRESS
    ) -> list[DataCatalog]:
        return []

    # put and get above never reach the primitives; they keep nothing, so they find nothing.
    def _store_files(
        self,
        run_id: str,
        sources: Sequence[Path],
        relatives: Sequence[Path],
        sizes: Sequence[int],
        callback: Callback,
    ) -> list[str]:
        return []

    def _stored_matches(self, run_id: str, pattern: str) -> list[StoredFile]:
        return []

    def _fetch_files(
        self, run_id: str, files: Sequence[StoredFile], callback: Callback
    ) -> list[str]:
        return []

    def sync_between_runs(self, previous_run_id: str, run_id: str) -> None:
        return None

    def run_files(self, run_id: str) -> dict[str, int]:
        return {}

    def download_run(self, run_id: str, folder: Path, callback: Callback = NO_PROGRESS) -> int:
        return 0

    def upload_run(self, run_id: str, folder: Path, callback: Callback = NO_PROGRESS) -> int:
        if folder_files(folder):
            raise CatalogError(
                f"the do-nothing catalog keeps no files, so the catalog of run {run_id!r} "
                "cannot be copied into it",
                run_id=run_id,
            )
        return 0

    def delete_run(self, run_id: str) -> int:
        return 0


__all__ = ["DoNothingCatalog"]
