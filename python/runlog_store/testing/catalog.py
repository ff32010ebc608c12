"""``CatalogContract``: what every catalog owes runnable's steps and the run-level tools of this
package, as pytest tests a catalog's own test module binds to it."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from runlog_store import BaseCatalog, DataCatalog, create_catalog, hash_file
from runlog_store.exceptions import CatalogError, InvalidRunIdError, NoMatchingFilesError
from runlog_store.hashing import HashAlgorithm, format_data_hash
from runlog_store.testing._checks import check_summary, drop_inapplicable, needs

RUN = "contract-run"
# The compute data folder, relative to the test's working directory (tmp_path), as runnable
# configures it.
COMPUTE = "compute"
SAMPLE: dict[str, bytes] = {
    "data/a.csv": b"x,y\n1,2\n",
    "data/b.csv": b"x,y\n3,4\n",
    "data/empty.csv": b"",
    "data/deep/c.txt": b"deep",
    "data/deep/deeper/d.bin": bytes(range(256)) * 64,
    "notes/read me ü.txt": "ünïcode\n".encode(),
    "top.txt": b"top",
}
DATA = sorted(name for name in SAMPLE if name.startswith("data/"))
EXECUTION_LOG = "step.execution.log"

CatalogFactory = Callable[..., BaseCatalog]


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under ``root``: POSIX path relative to it -> content."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def expected_hash(catalog: BaseCatalog, name: str) -> str:
    """The data_hash a catalog records for the compute folder's file ``name``."""
    return format_data_hash(
        catalog.hash_algorithm, hash_file(Path(COMPUTE) / name, catalog.hash_algorithm)
    )


class CatalogContract:
    """What every catalog must do, as pytest tests; subclass it in a test module.

    **What it checks**: ``put`` and ``get`` by glob patterns (nested folders, ``**``, ``?``),
    each entry's ``data_hash`` equal to the digest of the file's bytes by the configured
    algorithm (BLAKE3 as ``blake3:<hex>``, SHA-256 as runnable's bare hex), ``store_copy=False``
    hashing without storing, ``allow_file_not_found_exc``, ``NoMatchingFilesError`` naming the
    pattern, a get of a run never put, runs kept apart, changed files replaced, runnable's
    ``*.execution.log`` files never copied back, ``sync_between_runs``, invalid run ids
    refused, a summary without secrets, and the run-level operations (``run_files``,
    ``download_run``, ``upload_run``, ``delete_run``) as a round trip.

    Each test runs in its own ``tmp_path`` (the working directory) with the compute data folder
    ``compute`` (relative, as runnable configures it) holding a few files in nested folders.

    **Fixtures a subclass provides**

    - ``catalog_config`` (required): a dict ``{"type": <registered catalog type>, **config
      keys}`` over fresh, empty storage kept outside ``compute`` (e.g. ``tmp_path /
      "catalog"``, a new bucket); the suite adds ``compute_data_folder`` (and, where a test
      needs it, ``hash_algorithm``) and builds the catalog with
      ``runlog_store.create_catalog``.
    - ``catalog`` (optional): the catalog under test; by default ``make_catalog()``.

    **Class attributes a subclass may set**

    - ``keeps_files = False`` for a catalog that records and copies nothing (``do-nothing``):
      the tests of stored files are not collected (they are not part of its contract), and
      the first test checks that it returns no entries and writes nothing.
    - ``moves_whole_runs = False`` for a catalog without the run-level operations
      (``run_files``, ``download_run``, ``upload_run``, ``delete_run``) that copies and
      pruning of runs need: their test is not collected.
    """

    keeps_files: ClassVar[bool] = True
    moves_whole_runs: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        drop_inapplicable(cls)

    # --- fixtures ---------------------------------------------------------------------------

    @pytest.fixture
    def catalog_config(self) -> dict[str, Any]:
        pytest.fail(
            f"{type(self).__name__} must define a catalog_config fixture returning "
            '{"type": <catalog type>, **config} over fresh storage (see CatalogContract)'
        )

    @pytest.fixture
    def compute_folder(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        monkeypatch.chdir(tmp_path)
        for name, content in SAMPLE.items():
            path = tmp_path / COMPUTE / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        return tmp_path / COMPUTE

    @pytest.fixture
    def make_catalog(self, catalog_config: dict[str, Any], compute_folder: Path) -> CatalogFactory:
        if not isinstance(catalog_config.get("type"), str):
            raise TypeError(
                "catalog_config must be a dict with a 'type' (a registered catalog type name) "
                f"and the catalog's configuration keys, not {catalog_config!r}"
            )

        def make(**overrides: Any) -> BaseCatalog:
            config = {**catalog_config, "compute_data_folder": COMPUTE, **overrides}
            return create_catalog(config.pop("type"), **config)

        return make

    @pytest.fixture
    def catalog(self, make_catalog: CatalogFactory) -> BaseCatalog:
        return make_catalog()

    # --- what the subclass declared ---------------------------------------------------------

    def _needs_files(self, catalog: BaseCatalog) -> None:
        if not self.keeps_files:
            pytest.skip(f"{type(catalog).__name__} keeps no files (keeps_files = False)")

    def _needs_run_operations(self, catalog: BaseCatalog) -> None:
        self._needs_files(catalog)
        if not self.moves_whole_runs:
            pytest.skip(
                f"{type(catalog).__name__} does not move whole runs (moves_whole_runs = False)"
            )

    # --- put and get ------------------------------------------------------------------------

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
        entries = catalog.put("data/*.csv", run_id=RUN)
        assert all(isinstance(entry, DataCatalog) for entry in entries)
        assert sorted(entry.name for entry in entries) == [
            "data/a.csv",
            "data/b.csv",
            "data/empty.csv",
        ]
        for entry in entries:
            assert entry.stage == "put"
            assert entry.data_hash == expected_hash(catalog, entry.name), entry.name
            assert entry.catalog_relative_path.endswith(entry.name), entry
            assert entry.catalog_handler_location, entry

    @needs("keeps_files")
    def test_double_star_takes_nested_folders_and_get_brings_them_back(
        self, catalog: BaseCatalog, compute_folder: Path
    ) -> None:
        self._needs_files(catalog)
        put = {entry.name: entry.data_hash for entry in catalog.put("data/**/*", run_id=RUN)}
        assert sorted(put) == DATA
        shutil.rmtree(compute_folder)
        got = catalog.get("**/*", run_id=RUN)
        assert sorted(entry.name for entry in got) == DATA
        assert all(entry.stage == "get" for entry in got)
        assert {entry.name: entry.data_hash for entry in got} == put
        assert files_under(compute_folder) == {name: SAMPLE[name] for name in DATA}

    @needs("keeps_files")
    def test_get_takes_only_what_the_pattern_matches(
        self, catalog: BaseCatalog, compute_folder: Path
    ) -> None:
        self._needs_files(catalog)
        assert sorted(entry.name for entry in catalog.put("**/*", run_id=RUN)) == sorted(SAMPLE)
        for pattern, expected in (
            ("data/deep/*", ["data/deep/c.txt"]),
            ("**/*.bin", ["data/deep/deeper/d.bin"]),
            ("*.txt", ["top.txt"]),
            ("notes/*", ["notes/read me ü.txt"]),
            ("data/?.csv", ["data/a.csv", "data/b.csv"]),
        ):
            shutil.rmtree(compute_folder)
            got = catalog.get(pattern, run_id=RUN)
            assert sorted(entry.name for entry in got) == expected, pattern
            assert files_under(compute_folder) == {name: SAMPLE[name] for name in expected}

    @pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
    @needs("keeps_files")
    def test_data_hash_is_the_digest_of_the_recorded_algorithm(
        self, make_catalog: CatalogFactory, compute_folder: Path, algorithm: HashAlgorithm
    ) -> None:
        catalog = make_catalog(hash_algorithm=algorithm)
        self._needs_files(catalog)
        put = catalog.put("data/**/*", run_id=RUN)
        for entry in put:
            content = SAMPLE[entry.name]
            if algorithm == "sha256":  # runnable's form: bare hex, hashlib's digest
                assert entry.data_hash == hashlib.sha256(content).hexdigest(), entry.name
            else:
                assert entry.data_hash.startswith("blake3:"), entry.data_hash
            assert entry.data_hash == expected_hash(catalog, entry.name), entry.name
        shutil.rmtree(compute_folder)
        got = catalog.get("data/**/*", run_id=RUN)
        assert {e.name: e.data_hash for e in got} == {e.name: e.data_hash for e in put}

    @needs("keeps_files")
    def test_put_without_a_copy_only_hashes(self, catalog: BaseCatalog) -> None:
        self._needs_files(catalog)
        entries = catalog.put("data/*.csv", store_copy=False, run_id=RUN)
        assert sorted(entry.name for entry in entries) == [
            "data/a.csv",
            "data/b.csv",
            "data/empty.csv",
        ]
        for entry in entries:
            assert entry.stage == "put"
            assert entry.data_hash == expected_hash(catalog, entry.name), entry.name
        with pytest.raises(NoMatchingFilesError):
            catalog.get("data/*.csv", run_id=RUN)
        if self.moves_whole_runs:
            assert catalog.run_files(RUN) == {}

    @needs("keeps_files")
    def test_no_match_is_an_error_naming_the_pattern_unless_allowed(
        self, catalog: BaseCatalog
    ) -> None:
        self._needs_files(catalog)
        with pytest.raises(NoMatchingFilesError) as raised:
            catalog.put("nothing/*.csv", run_id=RUN)
        assert "nothing/*.csv" in str(raised.value)
        assert catalog.put("nothing/*.csv", allow_file_not_found_exc=True, run_id=RUN) == []
        catalog.put("data/a.csv", run_id=RUN)
        with pytest.raises(NoMatchingFilesError) as raised:
            catalog.get("nothing/*.csv", run_id=RUN)
        assert "nothing/*.csv" in str(raised.value)

    @needs("keeps_files")
    def test_get_of_a_run_never_put_is_no_matching_files(self, catalog: BaseCatalog) -> None:
        self._needs_files(catalog)
        with pytest.raises(NoMatchingFilesError):
            catalog.get("**/*", run_id="never-put")

    @needs("keeps_files")
    def test_runs_are_kept_apart(self, catalog: BaseCatalog, compute_folder: Path) -> None:
        self._needs_files(catalog)
        catalog.put("data/a.csv", run_id="one")
        catalog.put("data/b.csv", run_id="two")
        shutil.rmtree(compute_folder)
        assert [entry.name for entry in catalog.get("data/*", run_id="one")] == ["data/a.csv"]
        assert files_under(compute_folder) == {"data/a.csv": SAMPLE["data/a.csv"]}

    @needs("keeps_files")
    def test_a_changed_file_put_again_replaces_its_copy(
        self, catalog: BaseCatalog, compute_folder: Path
    ) -> None:
        self._needs_files(catalog)
        (first,) = catalog.put("data/a.csv", run_id=RUN)
        (compute_folder / "data" / "a.csv").write_bytes(b"x,y\n9,9\n")
        (second,) = catalog.put("data/a.csv", run_id=RUN)
        assert second.data_hash != first.data_hash
        assert second.data_hash == expected_hash(catalog, "data/a.csv")
        shutil.rmtree(compute_folder)
        (got,) = catalog.get("data/a.csv", run_id=RUN)
        assert got.data_hash == second.data_hash
        assert (compute_folder / "data" / "a.csv").read_bytes() == b"x,y\n9,9\n"

    @needs("keeps_files")
    def test_execution_logs_stay_in_the_catalog(
        self, catalog: BaseCatalog, compute_folder: Path
    ) -> None:
        """runnable puts each step's ``*.execution.log``; a get or a sync never copies them."""
        self._needs_files(catalog)
        (compute_folder / EXECUTION_LOG).write_bytes(b"log")
        catalog.put("data/a.csv", run_id=RUN)
        catalog.put(EXECUTION_LOG, run_id=RUN)
        shutil.rmtree(compute_folder)
        with pytest.raises(NoMatchingFilesError):
            catalog.get(EXECUTION_LOG, run_id=RUN)
        got = catalog.get("**/*", run_id=RUN)
        assert [entry.name for entry in got] == ["data/a.csv"]
        catalog.sync_between_runs(RUN, "retry")
        shutil.rmtree(compute_folder)
        assert [entry.name for entry in catalog.get("**/*", run_id="retry")] == ["data/a.csv"]
        assert files_under(compute_folder) == {"data/a.csv": SAMPLE["data/a.csv"]}

    @needs("keeps_files")
    def test_sync_between_runs_copies_a_run_for_its_retry(
        self, catalog: BaseCatalog, compute_folder: Path
    ) -> None:
        self._needs_files(catalog)
        put = {e.name: e.data_hash for e in catalog.put("data/**/*", run_id=RUN)}
        catalog.sync_between_runs(RUN, "retry")
        shutil.rmtree(compute_folder)
        got = catalog.get("data/**/*", run_id="retry")
        assert {e.name: e.data_hash for e in got} == put
        assert files_under(compute_folder) == {name: SAMPLE[name] for name in DATA}
        shutil.rmtree(compute_folder)
        assert sorted(e.name for e in catalog.get("data/**/*", run_id=RUN)) == DATA
        with pytest.raises(CatalogError):
            catalog.sync_between_runs("never-ran", "retry-2")

    @needs("keeps_files")
    def test_invalid_run_ids_are_refused(self, catalog: BaseCatalog) -> None:
        self._needs_files(catalog)
        for bad in ("", "..", "../escape", "a/b", ".hidden", "nul\x00byte"):
            with pytest.raises(InvalidRunIdError):
                catalog.put("data/a.csv", run_id=bad)
            with pytest.raises(InvalidRunIdError):
                catalog.get("data/a.csv", run_id=bad)
            with pytest.raises(InvalidRunIdError):
                catalog.sync_between_runs(bad, "fine")
            with pytest.raises(InvalidRunIdError):
                catalog.sync_between_runs("fine", bad)

    def test_summary_is_plain_and_shows_no_secret(self, catalog: BaseCatalog) -> None:
        check_summary(catalog)

    # --- whole runs -------------------------------------------------------------------------

    @needs("keeps_files", "moves_whole_runs")
    def test_a_run_moves_out_and_back_whole(
        self, catalog: BaseCatalog, compute_folder: Path, tmp_path: Path
    ) -> None:
        """run_files, download_run, upload_run and delete_run, as copies and pruning of runs
        use them: what goes out comes back byte for byte, under the same relative paths."""
        self._needs_run_operations(catalog)
        assert catalog.run_files(RUN) == {}
        catalog.put("**/*", run_id=RUN)
        files = catalog.run_files(RUN)
        assert len(files) == len(SAMPLE), files
        assert all(not name.startswith("/") and "\\" not in name for name in files), files
        assert sum(files.values()) == sum(len(content) for content in SAMPLE.values())

        exported = tmp_path / "exported"
        assert catalog.download_run(RUN, exported) == sum(files.values())
        out = files_under(exported)
        assert {name: len(content) for name, content in out.items()} == files
        assert sorted(out.values()) == sorted(SAMPLE.values())

        assert catalog.upload_run("moved", exported) == sum(files.values())
        assert catalog.run_files("moved") == files
        shutil.rmtree(compute_folder)
        got = catalog.get("**/*", run_id="moved")
        assert sorted(entry.name for entry in got) == sorted(SAMPLE)
        assert files_under(compute_folder) == SAMPLE

        assert catalog.delete_run("moved") == len(files)
        assert catalog.run_files("moved") == {}
        with pytest.raises(NoMatchingFilesError):
            catalog.get("**/*", run_id="moved")
        assert catalog.delete_run("moved") == 0
        assert catalog.run_files(RUN) == files, "deleting one run touched another"
        assert catalog.download_run("never-put", tmp_path / "nothing") == 0


__all__ = ["COMPUTE", "SAMPLE", "CatalogContract", "files_under"]
