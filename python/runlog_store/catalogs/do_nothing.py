"""``do-nothing``: a catalog that records and copies nothing (runnable's default for tests)."""

from __future__ import annotations

from typing import Any

from runlog_store.catalog import BaseCatalog
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


__all__ = ["DoNothingCatalog"]
