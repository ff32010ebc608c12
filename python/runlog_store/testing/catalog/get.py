"""``get``: the run's stored files a glob matches, copied back into the compute data folder,
runnable's execution logs never among them."""

from __future__ import annotations

from pathlib import Path

import pytest

from runlog_store import BaseCatalog
from runlog_store.exceptions import NoMatchingFilesError
from runlog_store.testing._checks import needs
from runlog_store.testing.catalog.suite import (
    DATA,
    EXECUTION_LOG,
    RUN,
    SAMPLE,
    CatalogSuite,
    get_back,
)


class GetTests(CatalogSuite):
    """A get brings back what the pattern matches, from the run named and no other, with the
    digests the put recorded."""

    @needs("keeps_files")
    def test_double_star_takes_nested_folders_and_get_brings_them_back(
        self, catalog: BaseCatalog, compute_folder: Path
    ) -> None:
        put = catalog.put("data/**/*", run_id=RUN)
        assert sorted(entry.name for entry in put) == DATA
        got = get_back(catalog, compute_folder, "**/*", DATA)
        assert {entry.name: entry.data_hash for entry in got} == {
            entry.name: entry.data_hash for entry in put
        }
        assert {entry.catalog_handler_location for entry in got} == {catalog.location()}

    @needs("keeps_files")
    def test_get_takes_only_what_the_pattern_matches(
        self, catalog: BaseCatalog, compute_folder: Path
    ) -> None:
        assert sorted(entry.name for entry in catalog.put("**/*", run_id=RUN)) == sorted(SAMPLE)
        for pattern, expected in (
            ("data/deep/*", ["data/deep/c.txt"]),
            ("**/*.bin", ["data/deep/deeper/d.bin"]),
            ("*.txt", ["top.txt"]),
            ("notes/*", ["notes/read me ü.txt"]),
            ("data/?.csv", ["data/a.csv", "data/b.csv"]),
            ("data/[!a].csv", ["data/b.csv"]),
        ):
            get_back(catalog, compute_folder, pattern, expected)

    @needs("keeps_files")
    def test_get_of_a_run_never_put_is_no_matching_files_naming_the_run(
        self, catalog: BaseCatalog
    ) -> None:
        with pytest.raises(NoMatchingFilesError) as raised:
            catalog.get("**/*", run_id="never-put")
        assert raised.value.run_id == "never-put" and "never-put" in str(raised.value)

    @needs("keeps_files")
    def test_runs_are_kept_apart(self, catalog: BaseCatalog, compute_folder: Path) -> None:
        catalog.put("data/a.csv", run_id="one")
        catalog.put("data/b.csv", run_id="two")
        get_back(catalog, compute_folder, "data/*", ["data/a.csv"], run_id="one")

    @needs("keeps_files")
    def test_execution_logs_stay_in_the_catalog(
        self, catalog: BaseCatalog, compute_folder: Path
    ) -> None:
        """runnable puts each step's ``*.execution.log``; a get or a sync never copies them."""
        (compute_folder / EXECUTION_LOG).write_bytes(b"log")
        catalog.put("data/a.csv", run_id=RUN)
        catalog.put(EXECUTION_LOG, run_id=RUN)
        (compute_folder / EXECUTION_LOG).unlink()
        with pytest.raises(NoMatchingFilesError):
            catalog.get(EXECUTION_LOG, run_id=RUN)
        get_back(catalog, compute_folder, "**/*", ["data/a.csv"])
        catalog.sync_between_runs(RUN, "retry")
        get_back(catalog, compute_folder, "**/*", ["data/a.csv"], run_id="retry")


__all__ = ["GetTests"]
