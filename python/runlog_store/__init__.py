"""runlog-store: crash-safe, concurrent, Rust-accelerated run log stores for runnable pipelines."""

from runlog_store import exceptions
from runlog_store.config import load_store
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
from runlog_store.registry import create_store, store_types
from runlog_store.store import BaseRunLogStore, SalvagedRunLog

__version__ = "0.1.0"

__all__ = [
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
    "create_store",
    "exceptions",
    "load_store",
    "store_types",
]
