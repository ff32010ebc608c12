"""Shared test fixtures: the reference fixtures folder and stores of every persistent type."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runlog_store import BaseRunLogStore, create_store

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
RUNNABLE_FIXTURES = FIXTURES / "runnable-0.50"
SEED_FIXTURES = FIXTURES / "seed-layout"

STORE_TYPES = ["buffered", "file-system", "chunked-fs"]
PERSISTENT_TYPES = ["file-system", "chunked-fs"]


def make_store(type_name: str, folder: Path, **config: object) -> BaseRunLogStore:
    if type_name == "buffered":
        return create_store(type_name, **config)
    config.setdefault("fsync", False)
    return create_store(type_name, log_folder=str(folder), **config)


@pytest.fixture(scope="session", autouse=True)
def _fixtures_present() -> None:
    if not FIXTURES.is_dir():
        pytest.fail(f"the shared fixtures are missing: expected them at {FIXTURES}")


@pytest.fixture(params=STORE_TYPES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BaseRunLogStore:
    return make_store(request.param, tmp_path / "logs")


@pytest.fixture(params=PERSISTENT_TYPES)
def persistent_store(request: pytest.FixtureRequest, tmp_path: Path) -> BaseRunLogStore:
    return make_store(request.param, tmp_path / "logs")


@pytest.fixture
def store_factory(tmp_path: Path) -> Iterator[Callable[..., BaseRunLogStore]]:
    def factory(type_name: str, **config: object) -> BaseRunLogStore:
        return make_store(type_name, tmp_path / "logs", **config)

    yield factory
