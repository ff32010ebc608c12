"""Finding run log stores and catalogs by YAML type name, through entry points.

The package registers its own stores (group ``runlog_store.run_log_store``) and catalogs
(group ``runlog_store.catalog``) exactly as a third-party package would, so a custom one is a
first-class citizen: install it and name it in YAML. The only module-level state of the
package is the cache below.

A type of the package's own (``BUILTIN``, the same names and objects as its entry points) is
imported by name, without reading the entry points of every installed distribution: that
read, and importing ``importlib.metadata`` for it, cost every ``runlog`` command more than
opening its store. A plugin cannot take a built-in type's name, nor runnable's alias of one
(``runlog-<type>``): those names are the package's.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from runlog_store.exceptions import ConfigurationError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from pydantic import BaseModel, ValidationError

    from runlog_store.catalogs.base import BaseCatalog
    from runlog_store.stores.base import BaseRunLogStore

STORE_GROUP = "runlog_store.run_log_store"
CATALOG_GROUP = "runlog_store.catalog"

# The package's own entry points of the two groups, as pyproject.toml registers them
# (tests/cli/test_startup.py checks that they are the same).
BUILTIN: dict[str, dict[str, str]] = {
    STORE_GROUP: {
        "buffered": "runlog_store.stores.buffered:BufferedRunLogStore",
        "file-system": "runlog_store.stores.file_system:FileSystemRunLogStore",
        "chunked-fs": "runlog_store.stores.chunked_fs:ChunkedFileSystemRunLogStore",
        "minio": "runlog_store.stores.minio:MinioRunLogStore",
        "chunked-minio": "runlog_store.stores.chunked_minio:ChunkedMinioRunLogStore",
        "postgres": "runlog_store.stores.postgres:PostgresRunLogStore",
    },
    CATALOG_GROUP: {
        "do-nothing": "runlog_store.catalogs.do_nothing:DoNothingCatalog",
        "file-system": "runlog_store.catalogs.file_system:FileSystemCatalog",
        "minio": "runlog_store.catalogs.minio:MinioCatalog",
        "content-fs": "runlog_store.catalogs.content_fs:ContentFileSystemCatalog",
        "content-minio": "runlog_store.catalogs.content_minio:ContentMinioCatalog",
    },
}

# Keys a YAML config may not set: they say what a service is, not how it is configured.
_FIXED_KEYS = frozenset({"service_name", "service_type", "supports_parallel_writes"})

ServiceT = TypeVar("ServiceT", bound="BaseModel")


@dataclass(frozen=True)
class _Kind:
    group: str
    label: str
    # "module:class" of the base every type of the kind subclasses, imported when one is made.
    base: str

    def base_class(self) -> type[BaseModel]:
        module, name = self.base.split(":")
        cls: type[BaseModel] = getattr(importlib.import_module(module), name)
        return cls


_STORES = _Kind(STORE_GROUP, "run log store", "runlog_store.stores.base:BaseRunLogStore")
_CATALOGS = _Kind(CATALOG_GROUP, "catalog", "runlog_store.catalogs.base:BaseCatalog")


@functools.cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=group)}
    # The built-in names are the package's whatever else is installed (see the module
    # docstring), also when the package runs from a source tree with no metadata.
    return {**found, **_builtin_points(group)}


@functools.cache
def _builtin_points(group: str) -> dict[str, EntryPoint]:
    from importlib.metadata import EntryPoint

    return {
        name: EntryPoint(name=name, value=value, group=group)
        for name, value in BUILTIN[group].items()
    }


def clear_cache() -> None:
    """Forget the entry points seen so far (after installing a plugin in a running process)."""
    _entry_points.cache_clear()


# runnable's plugin groups know our types as ``runlog-<type>`` (runlog_store.integrations.
# runnable), so that one YAML file serves runnable and runlog: those names are accepted here.
RUNNABLE_ALIAS_PREFIX = "runlog-"


def _builtin_value(kind: _Kind, type_name: str) -> tuple[str, str] | None:
    """``(name, "module:class")`` of a built-in type, runnable's alias of one included."""
    builtin = BUILTIN[kind.group]
    for name in (type_name, type_name.removeprefix(RUNNABLE_ALIAS_PREFIX)):
        if name in builtin:
            return name, builtin[name]
    return None


def _class(kind: _Kind, type_name: str) -> type[BaseModel]:
    found = _builtin_value(kind, type_name)
    load: Callable[[], Any]
    if found is not None:
        type_name, value = found
        load = functools.partial(_load, value)
    else:
        points = _entry_points(kind.group)
        aliased = type_name.removeprefix(RUNNABLE_ALIAS_PREFIX)
        if type_name not in points and aliased in points:
            type_name = aliased
        if type_name not in points:
            known = ", ".join(sorted(points)) or "none"
            raise ConfigurationError(
                f"unknown {kind.label} type {type_name!r}; registered types: {known}", key="type"
            )
        value = points[type_name].value
        load = points[type_name].load
    try:
        cls = load()
    except Exception as exc:
        raise ConfigurationError(
            f"{kind.label} type {type_name!r} could not be loaded from {value}: {exc}",
            key="type",
        ) from exc
    base = kind.base_class()
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigurationError(
            f"{kind.label} type {type_name!r} ({value}) is not a "
            f"subclass of runlog_store.{base.__name__}",
            key="type",
        )
    return cls


def _load(value: str) -> Any:
    """The class a built-in ``module:class`` names, as its entry point would load it."""
    module, name = value.split(":")
    return getattr(importlib.import_module(module), name)


def _create(kind: _Kind, type_name: str, config: dict[str, Any]) -> BaseModel:
    cls = _class(kind, type_name)
    for key in config:
        if key in _FIXED_KEYS:
            raise ConfigurationError(
                f"{kind.label} {type_name!r}: {key!r} is set by the type and cannot be configured",
                key=key,
            )
    from pydantic import ValidationError

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
