"""runlog-store: crash-safe, concurrent, Rust-accelerated run log stores for runnable pipelines.

Every name below is imported on first use (PEP 562), not with the package: ``import
runlog_store`` is what every ``runlog`` command pays before doing anything, and the modules
behind these names bring pydantic's models, the stores and the catalogs, which a command that
needs one store, or only prints its help, should not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runlog_store import exceptions
    from runlog_store._paths import validate_run_id
    from runlog_store.catalogs.base import BaseCatalog
    from runlog_store.config import load_catalog, load_store
    from runlog_store.hashing import hash_file, hash_files
    from runlog_store.models import (
        BranchLog,
        CodeIdentity,
        DataCatalog,
        JobLog,
        JsonParameter,
        MetricParameter,
        ObjectParameter,
        Parameter,
        RunLog,
        StepAttempt,
        StepLog,
    )
    from runlog_store.registry import catalog_types, create_catalog, create_store, store_types
    from runlog_store.stores.base import BaseRunLogStore, SalvagedRunLog

    __version__: str

# Where each public name lives; a module of its own (``exceptions``) when the value is "".
_LAZY: dict[str, tuple[str, str]] = {
    "exceptions": ("runlog_store.exceptions", ""),
    "validate_run_id": ("runlog_store._paths", "validate_run_id"),
    "BaseCatalog": ("runlog_store.catalogs.base", "BaseCatalog"),
    "load_catalog": ("runlog_store.config", "load_catalog"),
    "load_store": ("runlog_store.config", "load_store"),
    "hash_file": ("runlog_store.hashing", "hash_file"),
    "hash_files": ("runlog_store.hashing", "hash_files"),
    **{
        name: ("runlog_store.models", name)
        for name in (
            "BranchLog",
            "CodeIdentity",
            "DataCatalog",
            "JobLog",
            "JsonParameter",
            "MetricParameter",
            "ObjectParameter",
            "Parameter",
            "RunLog",
            "StepAttempt",
            "StepLog",
        )
    },
    "catalog_types": ("runlog_store.registry", "catalog_types"),
    "create_catalog": ("runlog_store.registry", "create_catalog"),
    "create_store": ("runlog_store.registry", "create_store"),
    "store_types": ("runlog_store.registry", "store_types"),
    "BaseRunLogStore": ("runlog_store.stores.base", "BaseRunLogStore"),
    "SalvagedRunLog": ("runlog_store.stores.base", "SalvagedRunLog"),
}

__all__ = [
    "BaseCatalog",
    "BaseRunLogStore",
    "BranchLog",
    "CodeIdentity",
    "DataCatalog",
    "JobLog",
    "JsonParameter",
    "MetricParameter",
    "ObjectParameter",
    "Parameter",
    "RunLog",
    "SalvagedRunLog",
    "StepAttempt",
    "StepLog",
    "__version__",
    "catalog_types",
    "create_catalog",
    "create_store",
    "exceptions",
    "hash_file",
    "hash_files",
    "load_catalog",
    "load_store",
    "store_types",
    "validate_run_id",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        # importlib.metadata alone takes longer to import than the rest of ``runlog --help``.
        from importlib.metadata import version

        value: Any = version("runlog-store")
        globals()[name] = value
        return value
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'runlog_store' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value  # found once: the next lookup is an ordinary global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
