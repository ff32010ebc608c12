"""The base of every part of the catalog contract: the compute folder each test starts in, the
fixtures a binding provides, what it may declare, and the check of a get into a fresh compute
folder that most parts make."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, ClassVar

import pytest

from runlog_store import BaseCatalog, DataCatalog, create_catalog, hash_file
from runlog_store.hashing import format_data_hash
from runlog_store.testing._checks import ContractSuite, missing_config, split_config

# The run the tests write.
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
    """The data_hash a catalog records for the compute data folder's file ``name``."""
    return format_data_hash(
        catalog.hash_algorithm, hash_file(Path(COMPUTE) / name, catalog.hash_algorithm)
    )


def build_catalog(config: dict[str, Any]) -> BaseCatalog:
    """``create_catalog(config["type"], **rest)``, its compute data folder the tests' one."""
    type_name, rest = split_config(config, "catalog_config", "catalog")
    return create_catalog(type_name, **{**rest, "compute_data_folder": COMPUTE})


def get_back(
    catalog: BaseCatalog,
    compute_folder: Path,
    pattern: str,
    expected: Collection[str],
    run_id: str = RUN,
) -> list[DataCatalog]:
    """Empty the compute data folder and get ``pattern`` of ``run_id`` back into it; checks
    that the entries name exactly ``expected`` (get entries, their catalog path the name, as
    runnable records them) and that the folder holds exactly those files of ``SAMPLE``."""
    shutil.rmtree(compute_folder)
    got = catalog.get(pattern, run_id=run_id)
    assert sorted(entry.name for entry in got) == sorted(expected), pattern
    for entry in got:
        assert entry.stage == "get" and entry.catalog_relative_path == entry.name, entry
    assert files_under(compute_folder) == {name: SAMPLE[name] for name in expected}, pattern
    return got


class CatalogSuite(ContractSuite):
    """Fixtures and declarations of the catalog contract (see ``CatalogContract``)."""

    keeps_files: ClassVar[bool] = True
    moves_whole_runs: ClassVar[bool] = True

    @pytest.fixture
    def catalog_config(self) -> dict[str, Any]:
        missing_config(self, "catalog_config", "catalog", "CatalogContract")

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
        split_config(catalog_config, "catalog_config", "catalog")  # a wrong fixture fails here

        def make(**overrides: Any) -> BaseCatalog:
            return build_catalog({**catalog_config, **overrides})

        return make

    @pytest.fixture
    def catalog(self, make_catalog: CatalogFactory) -> BaseCatalog:
        return make_catalog()


__all__ = [
    "COMPUTE",
    "DATA",
    "EXECUTION_LOG",
    "RUN",
    "SAMPLE",
    "CatalogSuite",
    "build_catalog",
    "expected_hash",
    "files_under",
    "get_back",
]
