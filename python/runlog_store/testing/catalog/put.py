"""``put``: the compute data folder's files a glob matches, hashed (and copied into the run's
catalog) in one pass, an entry recorded for each as runnable records it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from runlog_store import BaseCatalog, DataCatalog
from runlog_store.exceptions import CatalogError, NoMatchingFilesError
from runlog_store.hashing import HashAlgorithm
from runlog_store.testing._checks import needs
from runlog_store.testing.catalog.suite import (
    DATA,
    RUN,
    SAMPLE,
    CatalogFactory,
    CatalogSuite,
    build_catalog,
    expected_hash,
    files_under,
    get_back,
)

# BLAKE3 of SAMPLE["data/deep/c.txt"] (b"deep"), as the reference implementation gives it.
DEEP_BLAKE3 = "767885516adbf240135fb4d401dc157f4be7b7bd3a24adb62d34f0eb6a7fee7d"
# What "data/*.csv" matches.
CSV = ["data/a.csv", "data/b.csv", "data/empty.csv"]


def check_put_entries(
    catalog: BaseCatalog, entries: list[DataCatalog], expected: list[str]
) -> None:
    """A put's entries: one per file of ``expected``, each the digest of its file by the
    catalog's algorithm, its catalog path ``<run_id>/<name>`` and its location the catalog's,
    as runnable records them (``runlog verify`` finds the copies by them)."""
    assert all(isinstance(entry, DataCatalog) for entry in entries), entries
    assert sorted(entry.name for entry in entries) == expected
    for entry in entries:
        assert entry.stage == "put"
        assert entry.data_hash == expected_hash(catalog, entry.name), entry.name
        assert entry.catalog_relative_path == f"{RUN}/{entry.name}", entry
        assert entry.catalog_handler_location == catalog.location() != "", entry


class PutTests(CatalogSuite):
    """Entries of a put: one per matching file, its ``data_hash`` the digest of the file's bytes
    by the configured algorithm, its catalog path ``<run_id>/<name>`` (what ``runlog verify``
    reads); copies replaced when a file changed; what matches nothing, or lies outside the
    compute data folder, refused."""

    def test_put_records_an_entry_per_matching_file(
        self, catalog: BaseCatalog, tmp_path: Path
    ) -> None:
        if not self.keeps_files:
            # what keeps nothing records nothing, writes nothing and never fails
            before = files_under(tmp_path)
            assert catalog.put("data/**/*", run_id=RUN) == []
            assert catalog.put("nothing*", run_id=RUN) == []
            assert catalog.get("**/*", run_id=RUN) == []
            catalog.sync_between_runs(RUN, "retry")
            assert files_under(tmp_path) == before
            return
        check_put_entries(catalog, catalog.put("data/*.csv", run_id=RUN), CSV)

    @needs("keeps_files")
    def test_blake3_is_the_default(
        self, catalog_config: dict[str, Any], compute_folder: Path
    ) -> None:
        """A catalog configured without ``hash_algorithm`` records BLAKE3, as ``blake3:<hex>``."""
        catalog = build_catalog({k: v for k, v in catalog_config.items() if k != "hash_algorithm"})
        assert catalog.hash_algorithm == "blake3"
        (entry,) = catalog.put("data/deep/c.txt", run_id=RUN)
        assert entry.data_hash == f"blake3:{DEEP_BLAKE3}"

    @pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
    @needs("keeps_files")
    def test_data_hash_is_the_digest_of_the_recorded_algorithm(
        self, make_catalog: CatalogFactory, compute_folder: Path, algorithm: HashAlgorithm
    ) -> None:
        catalog = make_catalog(hash_algorithm=algorithm)
        put = catalog.put("data/**/*", run_id=RUN)
        check_put_entries(catalog, put, DATA)
        for entry in put:
            if algorithm == "sha256":  # runnable's form: bare hex, hashlib's digest
                assert entry.data_hash == hashlib.sha256(SAMPLE[entry.name]).hexdigest()
            else:
                assert entry.data_hash.startswith("blake3:"), entry.data_hash
        got = get_back(catalog, compute_folder, "data/**/*", DATA)
        assert {e.name: e.data_hash for e in got} == {e.name: e.data_hash for e in put}

    @needs("keeps_files")
    def test_runnable_accepts_the_entries(self, catalog: BaseCatalog, compute_folder: Path) -> None:
        """runnable's own ``DataCatalog`` model takes the entries of a put and a get as they
        are, field for field."""
        datastore = pytest.importorskip(
            "runnable.datastore", reason="runnable is not installed: its models cannot be asked"
        )
        put = catalog.put("data/**/*", run_id=RUN)
        got = get_back(catalog, compute_folder, "data/**/*", DATA)
        for entry in put + got:
            theirs = datastore.DataCatalog.model_validate(entry.model_dump())
            assert theirs.model_dump() == entry.model_dump(), entry

    @needs("keeps_files")
    def test_put_without_a_copy_only_hashes(self, catalog: BaseCatalog) -> None:
        check_put_entries(catalog, catalog.put("data/*.csv", store_copy=False, run_id=RUN), CSV)
        with pytest.raises(NoMatchingFilesError):
            catalog.get("data/*.csv", run_id=RUN)
        if self.moves_whole_runs:
            assert catalog.run_files(RUN) == {}

    @needs("keeps_files")
    def test_no_match_is_an_error_naming_the_pattern_unless_allowed(
        self, catalog: BaseCatalog
    ) -> None:
        with pytest.raises(NoMatchingFilesError) as raised:
            catalog.put("nothing/*.csv", run_id=RUN)
        assert "nothing/*.csv" in str(raised.value)
        assert catalog.put("nothing/*.csv", allow_file_not_found_exc=True, run_id=RUN) == []
        catalog.put("data/a.csv", run_id=RUN)
        with pytest.raises(NoMatchingFilesError) as raised:
            catalog.get("nothing/*.csv", run_id=RUN)
        assert "nothing/*.csv" in str(raised.value)

    @needs("keeps_files")
    def test_a_pattern_reaching_outside_the_compute_folder_is_refused(
        self, catalog: BaseCatalog, tmp_path: Path
    ) -> None:
        """Names stay inside the compute data folder: a glob that matches a file beside it is
        an error, and nothing is stored."""
        (tmp_path / "beside.txt").write_bytes(b"not data")
        with pytest.raises(CatalogError) as raised:
            catalog.put("../*.txt", run_id=RUN)
        assert not isinstance(raised.value, NoMatchingFilesError), raised.value
        with pytest.raises(NoMatchingFilesError):
            catalog.get("**/*", run_id=RUN)

    @needs("keeps_files")
    def test_a_changed_file_put_again_replaces_its_copy(
        self, catalog: BaseCatalog, compute_folder: Path
    ) -> None:
        (first,) = catalog.put("data/a.csv", run_id=RUN)
        (compute_folder / "data" / "a.csv").write_bytes(b"x,y\n9,9\n")
        (second,) = catalog.put("data/a.csv", run_id=RUN)
        assert second.data_hash != first.data_hash
        assert second.data_hash == expected_hash(catalog, "data/a.csv")
        shutil.rmtree(compute_folder)
        (got,) = catalog.get("data/a.csv", run_id=RUN)
        assert got.data_hash == second.data_hash
        assert (compute_folder / "data" / "a.csv").read_bytes() == b"x,y\n9,9\n"


__all__ = ["PutTests"]
