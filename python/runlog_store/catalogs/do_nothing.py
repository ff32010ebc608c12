"""``do-nothing``: a catalog that records and copies nothing (runnable's default for tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runlog_store.catalog import BaseCatalog, folder_files
from runlog_store.exceptions import CatalogError
from runlog_store.models import DataCatalog


class DoNothingCatalog(BaseCatalog):
    service_name: str = "do-nothing"

    def get_summary(self) -> dict[str, Any]:
        return {"Type": self.service_name}

    def get(self, name: str, *, run_id: str | None = None) -> list[DataCatalog]:
        return []

    def put(
        self,
        name: str,
        allow_file_not_found_exc: bool = False,
        store_copy: bool = True,
        *,
        run_id: str | None = None,
    ) -> list[DataCatalog]:
        return []

    def sync_between_runs(self, previous_run_id: str, run_id: str) -> None:
        return None

    def run_files(self, run_id: str) -> dict[str, int]:
        return {}

    def download_run(self, run_id: str, folder: Path) -> int:
        return 0

    def upload_run(self, run_id: str, folder: Path) -> int:
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
