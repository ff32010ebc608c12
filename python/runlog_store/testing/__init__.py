"""Contract test suites for run log stores and catalogs, ours and third parties'.

Each suite is a class of pytest tests that a test module binds to one implementation by
subclassing it and providing a fixture or two (the style of fsspec's ``fsspec/tests/abstract``)::

    import pytest
    from runlog_store.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_config(self, tmp_path):
            return {"type": "my-store", "folder": str(tmp_path / "runs")}

See :class:`StoreContract` and :class:`CatalogContract` for what each checks and which fixtures
and class attributes a subclass sets. The suites need pytest (``pip install
runlog-store[testing]``).

The suites are imported on first use, so the child processes of the multi-process tests (which
run ``runlog_store.testing._writer``) do not pay for importing pytest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runlog_store.testing.catalog import CatalogContract
    from runlog_store.testing.store import StoreContract

__all__ = ["CatalogContract", "StoreContract"]


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import pytest

    # Plain ``assert`` in the suites reports the values compared, as in the user's own tests
    # (a package named here has every module in it rewritten).
    pytest.register_assert_rewrite(
        "runlog_store.testing.store", "runlog_store.testing.catalog", "runlog_store.testing._checks"
    )
    if name == "StoreContract":
        from runlog_store.testing.store import StoreContract

        return StoreContract
    from runlog_store.testing.catalog import CatalogContract

    return CatalogContract
