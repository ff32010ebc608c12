"""runlog-store: crash-safe, concurrent, Rust-accelerated run log stores for runnable pipelines."""

from importlib.metadata import version

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

__version__ = version("runlog-store")

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
