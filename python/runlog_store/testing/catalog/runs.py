"""What a catalog does with runs: the run ids it accepts, the run it is called in, and whole
runs moved out, back in and deleted (as copies and pruning of runs use them); its summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from runlog_store import BaseCatalog
from runlog_store.exceptions import CatalogError, InvalidRunIdError, NoMatchingFilesError
from runlog_store.testing._checks import check_summary, needs
from runlog_store.testing.catalog.suite import (
    EXECUTION_LOG,
    RUN,
    SAMPLE,
    CatalogSuite,
    files_under,
    get_back,
)


class RunTests(CatalogSuite):
    """Run ids no catalog may hold are refused, a put or get outside a runnable run must name
    its run, and a run's catalog moves out and back whole."""

    @needs("keeps_files")
    def test_invalid_run_ids_are_refused(self, catalog: BaseCatalog) -> None:
        for bad in ("", "..", "../escape", "a/b", ".hidden", "nul\x00byte"):
            with pytest.raises(InvalidRunIdError):
                catalog.put("data/a.csv", run_id=bad)
            with pytest.raises(InvalidRunIdError):
                catalog.get("data/a.csv", run_id=bad)
            with pytest.raises(InvalidRunIdError):
                catalog.sync_between_runs(bad, "fine")
            with pytest.raises(InvalidRunIdError):
                catalog.sync_between_runs("fine", bad)

    @needs("keeps_files")
    def test_outside_a_runnable_run_a_call_needs_a_run_id(self, catalog: BaseCatalog) -> None:
        """Inside a runnable run the run id is the run's; outside one there is none to take."""
        with pytest.raises(CatalogError, match="run id"):
            catalog.put("data/a.csv")
        with pytest.raises(CatalogError, match="run id"):
            catalog.get("data/a.csv")

    def test_summary_is_plain_and_shows_no_secret(self, catalog: BaseCatalog) -> None:
        check_summary(catalog)

    @needs("keeps_files", "moves_whole_runs")
    def test_a_run_moves_out_and_back_whole(
        self, catalog: BaseCatalog, compute_folder: Path, tmp_path: Path
    ) -> None:
        """run_files, download_run, upload_run and delete_run: what goes out comes back byte
        for byte, under the same relative paths, execution logs included (they belong to the
        run, though a get never hands them back)."""
        assert catalog.run_files(RUN) == {}
        (compute_folder / EXECUTION_LOG).write_bytes(b"log")
        catalog.put("**/*", run_id=RUN)
        files = catalog.run_files(RUN)
        assert len(files) == len(SAMPLE) + 1, files
        assert [name for name in files if name.endswith(EXECUTION_LOG)], files
        assert all(not name.startswith("/") and "\\" not in name for name in files), files
        total = sum(len(content) for content in SAMPLE.values()) + len(b"log")
        assert sum(files.values()) == total

        exported = tmp_path / "exported"
        assert catalog.download_run(RUN, exported) == total
        out = files_under(exported)
        assert {name: len(content) for name, content in out.items()} == files
        assert sorted(out.values()) == sorted([*SAMPLE.values(), b"log"])

        assert catalog.upload_run("moved", exported) == total
        assert catalog.run_files("moved") == files
        get_back(catalog, compute_folder, "**/*", SAMPLE, run_id="moved")

        assert catalog.delete_run("moved") == len(files)
        assert catalog.run_files("moved") == {}
        with pytest.raises(NoMatchingFilesError):
            catalog.get("**/*", run_id="moved")
        assert catalog.delete_run("moved") == 0
        assert catalog.run_files(RUN) == files, "deleting one run touched another"
        assert catalog.download_run("never-put", tmp_path / "nothing") == 0


__all__ = ["RunTests"]
