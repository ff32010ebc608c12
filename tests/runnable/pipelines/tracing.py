"""Run a pipeline with every call runnable makes to the run log store and the catalog traced.

    python tracing.py <trace file> pipeline.py

Each call is one JSON line: process, class, method, how the arguments were passed and what
they were, what came back or what was raised. runnable's own implementations on the base
classes are traced too, to show that none of them is reached.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import runpy
import sys
from collections.abc import Callable
from typing import Any

import runnable.catalog as runnable_catalog
import runnable.datastore as runnable_datastore

from runlog_store.integrations import runnable as integration


def _kind(value: Any) -> str:
    if isinstance(value, dict) and value:
        value = next(iter(value.values()))
        return f"dict[{type(value).__module__}.{type(value).__qualname__}]"
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _traced(trace: str, owner: str, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        record: dict[str, Any] = {
            "pid": os.getpid(),
            "owner": owner,
            "method": name,
            "positional": [_kind(a) for a in args],
            "keywords": {k: _kind(v) for k, v in kwargs.items()},
        }
        try:
            result = method(self, *args, **kwargs)
            record["returned"] = _kind(result)
            return result
        except BaseException as exc:
            record["raised"] = [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__]
            raise
        finally:
            with open(trace, "a") as out:
                out.write(json.dumps(record) + "\n")

    return traced


def install(trace: str) -> None:
    classes = [
        ("ours", integration.RunlogRunLogStore),
        ("ours", integration.RunlogCatalog),
        ("runnable", runnable_datastore.BaseRunLogStore),
        ("runnable", runnable_catalog.BaseCatalog),
    ]
    for owner, cls in classes:
        for name, method in list(vars(cls).items()):
            if inspect.isfunction(method) and not name.startswith("_"):
                setattr(cls, name, _traced(trace, owner, name, method))


if __name__ == "__main__":
    install(os.path.abspath(sys.argv[1]))
    runpy.run_path(os.path.abspath(sys.argv[2]), run_name="__main__")
