"""Finding store classes by YAML type name, through entry points.

The package registers its own stores in the entry-point group ``runlog_store.run_log_store``
exactly as a third-party package would, so a custom store is a first-class citizen: install
it and name it in YAML. The only module-level state of the package is the cache below.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError

from runlog_store.exceptions import ConfigurationError
from runlog_store.store import BaseRunLogStore

STORE_GROUP = "runlog_store.run_log_store"

# Keys a YAML config may not set: they say what a store is, not how it is configured.
_FIXED_KEYS = frozenset({"service_name", "service_type"})


@functools.cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def clear_cache() -> None:
    """Forget the entry points seen so far (after installing a plugin in a running process)."""
    _entry_points.cache_clear()


def store_types() -> list[str]:
    """The YAML type names of every installed run log store."""
    return sorted(_entry_points(STORE_GROUP))


def store_class(type_name: str) -> type[BaseRunLogStore]:
    """The class registered under ``type_name``; ConfigurationError listing the known names."""
    points = _entry_points(STORE_GROUP)
    if type_name not in points:
        known = ", ".join(sorted(points)) or "none"
        raise ConfigurationError(
            f"unknown run log store type {type_name!r}; registered types: {known}", key="type"
        )
    try:
        cls = points[type_name].load()
    except Exception as exc:
        raise ConfigurationError(
            f"run log store type {type_name!r} could not be loaded from "
            f"{points[type_name].value}: {exc}",
            key="type",
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseRunLogStore)):
        raise ConfigurationError(
            f"run log store type {type_name!r} ({points[type_name].value}) is not a "
            "subclass of runlog_store.BaseRunLogStore",
            key="type",
        )
    return cls


def create_store(type_name: str, **config: Any) -> BaseRunLogStore:
    """A store of the given type, its config validated by the store's own fields."""
    cls = store_class(type_name)
    for key in config:
        if key in _FIXED_KEYS:
            raise ConfigurationError(
                f"run log store {type_name!r}: {key!r} is set by the store type and cannot be "
                "configured",
                key=key,
            )
    try:
        return cls(**config)
    except ValidationError as exc:
        raise _config_error(type_name, cls, exc) from None


def _config_error(
    type_name: str, cls: type[BaseRunLogStore], exc: ValidationError
) -> ConfigurationError:
    allowed = sorted(
        k for k in cls.model_fields if k not in _FIXED_KEYS | {"supports_parallel_writes"}
    )
    problems = []
    first_key = ""
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        first_key = first_key or key
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key {key!r} (allowed: {', '.join(allowed) or 'none'})")
        elif err["type"] == "missing":
            problems.append(f"missing required key {key!r}")
        else:
            problems.append(f"key {key!r}: {err['msg']} (got {err.get('input')!r})")
    return ConfigurationError(
        f"run log store {type_name!r} config: " + "; ".join(problems), key=first_key
    )
