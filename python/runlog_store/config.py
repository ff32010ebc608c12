"""Reading store configuration from the YAML files runnable users already have.

Also the ``catalog:`` section of the same files (``load_catalog``), and ``runlog gc``'s
``retention:`` section (``load_retention``), which runnable does not read.

``run-log-store:`` (runnable's spelling) or ``run_log_store:`` (the older one), with ``type:``
and an optional ``config:`` mapping. Without a file, ``RUNNABLE_CONFIGURATION_FILE`` names one;
without either, the embedded default is ``chunked-fs`` in ``.run_log_store``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runlog_store.exceptions import ConfigurationError
from runlog_store.registry import create_catalog, create_store

if TYPE_CHECKING:
    from runlog_store.catalogs.base import BaseCatalog
    from runlog_store.ops.retention import RetentionPolicy
    from runlog_store.stores.base import BaseRunLogStore

CONFIG_ENV = "RUNNABLE_CONFIGURATION_FILE"
STORE_KEYS = ("run-log-store", "run_log_store")
DEFAULT_STORE_TYPE = "chunked-fs"
DEFAULT_STORE_CONFIG: dict[str, Any] = {"log_folder": ".run_log_store"}
CATALOG_KEYS = ("catalog",)
DEFAULT_CATALOG_TYPE = "file-system"
DEFAULT_CATALOG_CONFIG: dict[str, Any] = {"catalog_location": ".catalog"}
RETENTION_KEY = "retention"


def resolve_config_file(config_file: str | os.PathLike[str] | None = None) -> Path | None:
    """The file to read: the argument, else the environment variable, else none."""
    if config_file is not None:
        return Path(config_file)
    from_env = os.environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else None


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The YAML mapping in ``path``; ConfigurationError naming the file for anything else."""
    import yaml  # here: a command that reads no file (``runlog --help``) does not load it

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"configuration file {path} does not exist", path=str(path)
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"cannot read configuration file {path}: {exc}", path=str(path)
        ) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(
            f"configuration file {path} is not valid YAML: {exc}", path=str(path)
        ) from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigurationError(
            f"configuration file {path} must hold a mapping at the top, "
            f"not {type(document).__name__}",
            path=str(path),
        )
    return document


def section(
    document: dict[str, Any], keys: tuple[str, ...], path: str
) -> tuple[str, dict[str, Any]] | None:
    """``(type, config)`` of one service section (first of ``keys`` present), or None."""
    present = [k for k in keys if k in document]
    if not present:
        return None
    if len(present) > 1:
        raise ConfigurationError(
            f"{path}: both {present[0]!r} and {present[1]!r} are set; keep one",
            key=present[0],
            path=path,
        )
    name = present[0]
    body = document[name]
    if not isinstance(body, dict):
        raise ConfigurationError(
            f"{path}: {name!r} must be a mapping with a 'type'", key=name, path=path
        )
    unknown = set(body) - {"type", "config"}
    if unknown:
        raise ConfigurationError(
            f"{path}: {name!r} has unknown key(s) {', '.join(map(repr, sorted(unknown)))}; "
            "expected 'type' and 'config'",
            key=f"{name}.{sorted(unknown)[0]}",
            path=path,
        )
    type_name = body.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise ConfigurationError(
            f"{path}: {name!r} needs a 'type' (a string)", key=f"{name}.type", path=path
        )
    config = body.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigurationError(
            f"{path}: '{name}.config' must be a mapping", key=f"{name}.config", path=path
        )
    bad = [k for k in config if not isinstance(k, str)]
    if bad:
        raise ConfigurationError(
            f"{path}: '{name}.config' has a non-string key {bad[0]!r}",
            key=f"{name}.config",
            path=path,
        )
    return type_name, config


def store_settings(config_file: str | os.PathLike[str] | None = None) -> tuple[str, dict[str, Any]]:
    """The store ``(type, config)`` the configuration names, or the embedded default."""
    path = resolve_config_file(config_file)
    if path is None:
        return DEFAULT_STORE_TYPE, dict(DEFAULT_STORE_CONFIG)
    found = section(read_config_file(path), STORE_KEYS, str(path))
    if found is None:
        return DEFAULT_STORE_TYPE, dict(DEFAULT_STORE_CONFIG)
    return found


def catalog_settings(
    config_file: str | os.PathLike[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The catalog ``(type, config)`` of the ``catalog:`` section, or runnable's default."""
    path = resolve_config_file(config_file)
    if path is None:
        return DEFAULT_CATALOG_TYPE, dict(DEFAULT_CATALOG_CONFIG)
    found = section(read_config_file(path), CATALOG_KEYS, str(path))
    if found is None:
        return DEFAULT_CATALOG_TYPE, dict(DEFAULT_CATALOG_CONFIG)
    return found


def load_store(config_file: str | os.PathLike[str] | None = None) -> BaseRunLogStore:
    """The run log store a runnable configuration file describes (see module docstring)."""
    type_name, config = store_settings(config_file)
    with _naming_the_file(config_file):
        return create_store(type_name, **config)


def load_catalog(config_file: str | os.PathLike[str] | None = None) -> BaseCatalog:
    """The catalog of the same configuration file (default: file-system in ``.catalog``)."""
    type_name, config = catalog_settings(config_file)
    with _naming_the_file(config_file):
        return create_catalog(type_name, **config)


def load_retention(config_file: str | os.PathLike[str] | None = None) -> RetentionPolicy:
    """The ``retention:`` section of the configuration file as a policy (``runlog gc``); an
    empty policy when there is no file or no section. ConfigurationError naming the file and
    the key (``retention.keep_last``) for anything it cannot use."""
    from pydantic import ValidationError

    from runlog_store.ops.retention import RetentionPolicy

    path = resolve_config_file(config_file)
    if path is None:
        return RetentionPolicy()
    body = read_config_file(path).get(RETENTION_KEY)
    if body is None:
        return RetentionPolicy()
    if not isinstance(body, dict):
        raise ConfigurationError(
            f"{path}: {RETENTION_KEY}: must be a mapping of older_than, keep_last, statuses, "
            "filter and include_unfinished",
            key=RETENTION_KEY,
            path=str(path),
        )
    try:
        return RetentionPolicy.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"][:1])
        key = f"{RETENTION_KEY}.{where}" if where else RETENTION_KEY
        if error["type"] == "extra_forbidden":
            known = ", ".join(RetentionPolicy.model_fields)
            message = f"unknown key; the keys are {known}"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigurationError(f"{path}: {key}: {message}", key=key, path=str(path)) from None


@contextlib.contextmanager
def _naming_the_file(config_file: str | os.PathLike[str] | None) -> Iterator[None]:
    """Configuration errors name the file they come from."""
    try:
        yield
    except ConfigurationError as exc:
        path = resolve_config_file(config_file)
        if path is not None and str(path) not in exc.message:
            raise ConfigurationError(
                f"{path}: {exc.message}", key=exc.key, path=str(path)
            ) from None
        raise
