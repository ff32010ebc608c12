"""``sync_between_runs``: a run's catalog copied for its retry."""

from __future__ import annotations

from pathlib import Path

import pytest

from runlog_store import BaseCatalog
from runlog_store.exceptions import CatalogError
from runlog_store.testing._checks import needs
from runlog_store.testing.catalog.suite import DATA, RUN, CatalogSuite, get_back


class SyncTests(CatalogSuite):
    """A retry gets what the run it retries put, and the run keeps it too."""

    @needs("keeps_files")
    def test_sync_between_runs_copies_a_run_for_its_retry(
        self, catalog: BaseCatalog, compute_folder: Path
    ) -> None:
        put = {e.name: e.data_hash for e in catalog.put("data/**/*", run_id=RUN)}
        catalog.sync_between_runs(RUN, "retry")
        got = get_back(catalog, compute_folder, "data/**/*", DATA, run_id="retry")
        assert {e.name: e.data_hash for e in got} == put
        get_back(catalog, compute_folder, "data/**/*", DATA)
        with pytest.raises(CatalogError, match="never-ran"):
            catalog.sync_between_runs("never-ran", "retry-2")


__all__ = ["SyncTests"]
