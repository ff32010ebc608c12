"""Configuration files as runnable writes them, and stores found through entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runlog_store import create_store, load_store, store_types
from runlog_store.exceptions import ConfigurationError
from runlog_store.stores.chunked_fs import ChunkedFileSystemRunLogStore
from runlog_store.stores.file_system import FileSystemRunLogStore

from ..conftest import InstalledPlugin


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_builtin_types_are_registered_through_entry_points() -> None:
    assert {"buffered", "file-system", "chunked-fs"} <= set(store_types())


@pytest.mark.parametrize("key", ["run-log-store", "run_log_store"])
def test_both_spellings_of_the_section(tmp_path: Path, key: str) -> None:
    path = _write(
        tmp_path,
        f"""
        pipeline-executor:
          type: local
        {key}:
          type: file-system
          config:
            log_folder: {tmp_path}/logs
            fsync: false
        catalog:
          type: file-system
    """,
    )
    store = load_store(path)
    assert isinstance(store, FileSystemRunLogStore)
    assert store.log_folder == f"{tmp_path}/logs" and store.fsync is False


def test_environment_variable_then_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "run-log-store:\n  type: buffered\n")
    monkeypatch.setenv("RUNNABLE_CONFIGURATION_FILE", str(path))
    assert load_store().service_name == "buffered"
    monkeypatch.delenv("RUNNABLE_CONFIGURATION_FILE")
    default = load_store()
    assert isinstance(default, ChunkedFileSystemRunLogStore)
    assert default.log_folder == ".run_log_store" and default.fsync is True
    empty = _write(tmp_path, "executor:\n  type: local\n")
    assert isinstance(load_store(empty), ChunkedFileSystemRunLogStore)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (
            "run-log-store:\n  type: chunked-fs\n  config:\n    log_foldr: x\n",
            ["log_foldr", "log_folder"],
        ),
        ("run-log-store:\n  type: chunked-fs\n  config:\n    fsync: maybe\n", ["fsync"]),
        ("run-log-store:\n  type: chunked-fs\n  config:\n    lock_timeout: -1\n", ["lock_timeout"]),
        ("run-log-store:\n  type: nosuch\n", ["nosuch", "chunked-fs", "file-system", "buffered"]),
        ("run-log-store:\n  config: {}\n", ["type"]),
        ("run-log-store: [1, 2]\n", ["run-log-store"]),
        ("run-log-store:\n  type: chunked-fs\n  config: [1]\n", ["config"]),
        ("run-log-store:\n  type: chunked-fs\n  configs: {}\n", ["configs"]),
        ("run-log-store:\n  type: buffered\nrun_log_store:\n  type: buffered\n", ["run_log_store"]),
        ("run-log-store:\n  type: chunked-fs\n  config:\n    service_name: x\n", ["service_name"]),
        ("- just\n- a list\n", ["mapping"]),
        ("run-log-store: {type: [unclosed\n", ["YAML"]),
    ],
)
def test_bad_configuration_names_the_offender(tmp_path: Path, text: str, names: list[str]) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigurationError) as err:
        load_store(path)
    for name in names:
        assert name in str(err.value)
    assert str(path) in str(err.value)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"does-not-exist\.yaml"):
        load_store(tmp_path / "does-not-exist.yaml")


def test_create_store_validates_config() -> None:
    with pytest.raises(ConfigurationError, match="unknown key 'colour'"):
        create_store("buffered", colour="blue")


@pytest.fixture
def plugin_path(installed_plugin: InstalledPlugin) -> Path:
    """Where the example third-party store package is installed."""
    return installed_plugin.site


def _run_with_plugin(plugin_path: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(plugin_path))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )


def test_third_party_store_is_loaded_by_name(plugin_path: Path, tmp_path: Path) -> None:
    _write(
        tmp_path,
        """
        run-log-store:
          type: example-db
          config:
            connection_string: "sqlite:///:memory:"
            table_name: pipeline_runs
    """,
    )
    result = _run_with_plugin(
        plugin_path,
        """
        from runlog_store import load_store, store_types
        assert "example-db" in store_types()
        store = load_store("config.yaml")
        store.create_run_log("r1", tag="t")
        store.add_step_log(store.create_step_log("a", "a"), "r1")
        store.set_parameters("r1", {})
        steps = list(store.get_run_log_by_id("r1", full=True).steps)
        print(type(store).__name__, store.table_name, steps)
    """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ExampleDatabaseStore pipeline_runs ['a']"


def test_third_party_store_config_is_validated(plugin_path: Path, tmp_path: Path) -> None:
    result = _run_with_plugin(
        plugin_path,
        """
        from runlog_store import create_store
        from runlog_store.exceptions import ConfigurationError
        for kwargs in ({}, {"connection_string": 1}):
            try:
                create_store("example-db", **kwargs)
            except ConfigurationError as exc:
                print(exc)
        try:
            create_store("not-a-store")
        except ConfigurationError as exc:
            print(exc)
    """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "missing required key 'connection_string'" in lines[0]
    assert "'connection_string'" in lines[1]
    assert "not a subclass of runlog_store.BaseRunLogStore" in lines[2]
