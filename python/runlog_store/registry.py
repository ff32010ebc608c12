"""Finding run log stores and catalogs by YAML type name, through entry points.

The package registers its own stores (group ``runlog_store.run_log_store``) and catalogs
(group ``runlog_store.catalog``) exactly as a third-party package would, so a custom one is a
first-class citizen: install it and name it in YAML. The only module-level state of the
package is the cache below.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from runlog_store.catalogs.base import BaseCatalog
from runlog_store.exceptions import ConfigurationError
from runlog_store.stores.base import BaseRunLogStore

STORE_GROUP = "runlog_store.run_log_store"
CATALOG_GROUP = "runlog_store.catalog"

# Keys a YAML config may not set: they say what a service is, not how it is configured.
_FIXED_KEYS = frozenset({"service_name", "service_type", "supports_parallel_writes"})

ServiceT = TypeVar("ServiceT", bound=BaseModel)


@dataclass(frozen=True)
class _Kind:
    group: str
    label: str
    base: type[BaseModel]


_STORES = _Kind(STORE_GROUP, "run log store", BaseRunLogStore)
_CATALOGS = _Kind(CATALOG_GROUP, "catalog", BaseCatalog)


@functools.cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def clear_cache() -> None:
    """Forget the entry points seen so far (after installing a plugin in a running process)."""
    _entry_points.cache_clear()


# runnable's plugin groups know our types as ``runlog-<type>`` (runlog_store.integrations.
# runnable), so that one YAML file serves runnable and runlog: those names are accepted here.
RUNNABLE_ALIAS_PREFIX = "runlog-"


def _class(kind: _Kind, type_name: str) -> type[BaseModel]:
    points = _entry_points(kind.group)
    aliased = type_name.removeprefix(RUNNABLE_ALIAS_PREFIX)
    if type_name not in points and aliased in points:
        type_name = aliased
    if type_name not in points:
        known = ", ".join(sorted(points)) or "none"
        raise ConfigurationError(
            f"unknown {kind.label} type {type_name!r}; registered types: {known}", key="type"
        )
    try:
        cls = points[type_name].load()
    except Exception as exc:
        raise ConfigurationError(
            f"{kind.label} type {type_name!r} could not be loaded from "
            f"{points[type_name].value}: {exc}",
            key="type",
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, kind.base)):
        raise ConfigurationError(
            f"{kind.label} type {type_name!r} ({points[type_name].value}) is not a "
            f"subclass of runlog_store.{kind.base.__name__}",
            key="type",
        )
    return cls


def _create(kind: _Kind, type_name: str, config: dict[str, Any]) -> BaseModel:
    cls = _class(kind, type_name)
    for key in config:
        if key in _FIXED_KEYS:
            raise ConfigurationError(
                f"{kind.label} {type_name!r}: {key!r} is set by the type and cannot be configured",
                key=key,
            )
    try:
        return cls(**config)
    except ValidationError as exc:
        raise _config_error(kind, type_name, cls, exc) from None


def store_types() -> list[str]:
    """The YAML type names of every installed run log store."""
    return sorted(_entry_points(STORE_GROUP))


def create_store(type_name: str, **config: Any) -> BaseRunLogStore:
    """A store of the given type, its config validated by the store's own fields."""
    return _create(_STORES, type_name, config)  # type: ignore[return-value]


def catalog_types() -> list[str]:
    """The YAML type names of every installed catalog."""
    return sorted(_entry_points(CATALOG_GROUP))


def create_catalog(type_name: str, **config: Any) -> BaseCatalog:
    """A catalog of the given type, its config validated by the catalog's own fields."""
    return _create(_CATALOGS, type_name, config)  # type: ignore[return-value]


_SECRET_WORDS = ("secret", "password", "token", "access_key")


def _shown_input(key: str, err: Any) -> str:
    """The offending value, unless it could hold a secret (or is the whole config)."""
    value = err.get("input")
    if not key or isinstance(value, dict) or any(w in key.lower() for w in _SECRET_WORDS):
        return ""
    return f" (got {value!r})"


def _config_error(
    kind: _Kind, type_name: str, cls: type[BaseModel], exc: ValidationError
) -> ConfigurationError:
    allowed = sorted(k for k in cls.model_fields if k not in _FIXED_KEYS)
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
            problems.append(f"key {key or 'config'!r}: {err['msg']}{_shown_input(key, err)}")
    return ConfigurationError(
        f"{kind.label} {type_name!r} config: " + "; ".join(problems), key=first_key
    )
