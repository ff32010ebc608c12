"""The base of every part of the store contract: the fixtures a binding provides, what it may
declare, and how a store is built from its ``store_config``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from runlog_store import BaseRunLogStore, create_store
from runlog_store.testing._checks import ContractSuite, missing_config, split_config

# The run the tests write.
RUN = "contract-run"

StorageListing = Callable[[], object]


def build_store(config: dict[str, Any]) -> BaseRunLogStore:
    """``create_store(config["type"], **rest)``: how the suite (and its child processes) build
    a store from a ``store_config``."""
    type_name, rest = split_config(config, "store_config", "store")
    return create_store(type_name, **rest)


class StoreSuite(ContractSuite):
    """Fixtures and declarations of the store contract (see ``StoreContract``)."""

    shared_between_processes: ClassVar[bool] = True
    lists_runs: ClassVar[bool | None] = None
    deletes_runs: ClassVar[bool | None] = None
    writer_processes: ClassVar[int] = 4
    branches_per_writer: ClassVar[int] = 6
    kill_rounds: ClassVar[int] = 3
    process_timeout: ClassVar[float] = 120.0

    # --- fixtures ---------------------------------------------------------------------------

    @pytest.fixture
    def store_config(self) -> dict[str, Any]:
        missing_config(self, "store_config", "store", "StoreContract")

    @pytest.fixture
    def store(self, store_config: dict[str, Any]) -> BaseRunLogStore:
        return build_store(store_config)

    @pytest.fixture
    def storage_listing(self) -> StorageListing | None:
        return None

    # --- what the subclass declared ---------------------------------------------------------

    def _lists(self, store: BaseRunLogStore) -> bool:
        if self.lists_runs is not None:
            return self.lists_runs
        return type(store).list_run_ids is not BaseRunLogStore.list_run_ids

    def _deletes(self, store: BaseRunLogStore) -> bool:
        if self.deletes_runs is not None:
            return self.deletes_runs
        return type(store).delete_run is not BaseRunLogStore.delete_run

    def _needs_parallel_writers(self, store: BaseRunLogStore) -> None:
        if not store.supports_parallel_writes:
            pytest.skip(
                f"{type(store).__name__} does not say supports_parallel_writes, so concurrent "
                "writer processes are not part of its contract"
            )


__all__ = ["RUN", "StorageListing", "StoreSuite", "build_store"]
