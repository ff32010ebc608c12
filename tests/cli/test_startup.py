"""What starting ``runlog`` imports: not what the command does not use.

Every ``runlog`` command, ``--help`` included, first imports ``runlog_store`` and the command
line; a module imported there is paid for by every command. Each check runs a fresh interpreter
and reads its ``sys.modules``: the object-storage SDKs, the database driver, runnable, the search
language's parser and pydantic's models come with the command that uses them, not before. How
long a start takes is measured beside the search in benches/test_bench_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml

import runlog_store
from runlog_store import registry
from runlog_store.cli import render

# Third-party packages no start imports: object storage (minio, its urllib3, boto), the
# postgres store's driver, runnable, the search parser (lark).
HEAVY = ("minio", "urllib3", "boto3", "botocore", "psycopg", "psycopg_pool", "runnable", "lark")
# The modules of the stores and catalogs no command reading a local folder needs.
REMOTE = (
    "runlog_store.objectstore",
    "runlog_store.stores.minio",
    "runlog_store.stores.chunked_minio",
    "runlog_store.stores.postgres",
    "runlog_store.catalogs.minio",
    "runlog_store.catalogs.content_minio",
    "runlog_store.integrations",
)


def _modules_after(code: str, cwd: Path | None = None) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    env = {k: v for k, v in os.environ.items() if k != "RUNNABLE_CONFIGURATION_FILE"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def _found(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_import_runlog_store_imports_no_store_nor_model() -> None:
    modules = _modules_after("import runlog_store")
    unwanted = (
        *HEAVY,
        *REMOTE,
        "pydantic",
        "yaml",
        "importlib.metadata",
        "runlog_store.models",
        "runlog_store.stores",
        "runlog_store.catalogs",
        "runlog_store.registry",
        "runlog_store.config",
        "runlog_store.search",
        "runlog_store.ops",
    )
    assert _found(modules, unwanted) == []


def test_command_line_module_imports_no_store_nor_model() -> None:
    """What ``runlog --help`` pays for: typer and rich, not the stores."""
    modules = _modules_after("import runlog_store.cli.app")
    unwanted = (
        *HEAVY,
        *REMOTE,
        "pydantic",
        "yaml",
        "importlib.metadata",
        "runlog_store.models",
        "runlog_store.stores",
        "runlog_store.catalogs",
        "runlog_store.search",
        "runlog_store.ops",
        "runlog_store.cli.progress",
        "runlog_store.cli.timeline",
        "runlog_store.cli.demo",
        "rich.progress",
    )
    assert _found(modules, unwanted) == []


def test_listing_a_folder_imports_no_remote_store(tmp_path: Path) -> None:
    """``runlog list --filter`` on a chunked-fs store: its store and the search, nothing of the
    object-storage stores, the postgres store or runnable, and no reading of every installed
    distribution's entry points (the built-in type is found by name)."""
    folder = tmp_path / "runs"
    store = runlog_store.create_store("chunked-fs", log_folder=str(folder))
    store.create_run_log("r1", tag="nightly")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"run-log-store": {"type": "chunked-fs", "config": {"log_folder": "runs"}}})
    )
    modules = _modules_after(
        """
        import sys
        from unittest import mock
        from runlog_store.cli.app import main

        argv = ["runlog", "list", "-c", "config.yaml", "--filter", "tag = 'nightly'", "--json"]
        scanned = mock.patch(
            "runlog_store.registry._entry_points", side_effect=AssertionError("scanned")
        )
        with mock.patch.object(sys, "argv", argv), scanned:
            try:
                main()
            except SystemExit as exc:
                assert exc.code == 0, exc.code
        """,
        cwd=tmp_path,
    )
    assert "runlog_store.stores.chunked_fs" in modules
    assert "runlog_store.search.query" in modules
    assert _found(modules, tuple(p for p in HEAVY if p != "lark") + REMOTE) == []


def test_running_help_imports_no_pydantic() -> None:
    """``runlog --help`` reads its flag without pydantic: typer would build a pydantic
    TypeAdapter for each option it reads (``runlog_store.cli.app._PlainValue``)."""
    modules = _modules_after(
        """
        import sys
        from unittest import mock
        from runlog_store.cli.app import main

        with mock.patch.object(sys, "argv", ["runlog", "list", "--help"]):
            try:
                main()
            except SystemExit as exc:
                assert exc.code == 0, exc.code
        """
    )
    assert _found(modules, ("pydantic", "typer._adapters", "importlib.metadata")) == []


def test_listing_reads_options_without_pydantic_nor_plugins(tmp_path: Path) -> None:
    """``runlog list`` with every kind of option: none read through typer's pydantic adapters,
    and pydantic, which the stores use, looks for no plugin among the installed distributions'
    entry points (any look fails the command here)."""
    folder = tmp_path / "runs"
    store = runlog_store.create_store("file-system", log_folder=str(folder))
    store.create_run_log("r1", tag="nightly")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"run-log-store": {"type": "file-system", "config": {"log_folder": "runs"}}})
    )
    modules = _modules_after(
        """
        import importlib.metadata, json, os, sys
        from unittest import mock
        from runlog_store.cli.app import main

        argv = [
            "runlog", "list", "-c", "config.yaml", "--filter", "tag = 'nightly'",
            "--order-by", "start_time", "--limit", "5", "--tag", "nightly", "--json", "-v",
        ]
        looked = mock.patch.object(
            importlib.metadata, "entry_points", side_effect=AssertionError("entry points read")
        )
        with mock.patch.object(sys, "argv", argv), looked:
            try:
                main()
            except SystemExit as exc:
                assert exc.code == 0, exc.code
        assert "PYDANTIC_DISABLE_PLUGINS" not in os.environ  # as it was before main()
        """,
        cwd=tmp_path,
    )
    assert "runlog_store.stores.file_system" in modules
    assert "typer._adapters" not in modules


def test_a_users_choice_of_pydantic_plugins_stands(tmp_path: Path) -> None:
    """A PYDANTIC_DISABLE_PLUGINS the user set is theirs: runlog neither changes nor removes
    it."""
    _modules_after(
        """
        import os, sys
        from unittest import mock
        from runlog_store.cli.app import main

        os.environ["PYDANTIC_DISABLE_PLUGINS"] = "someplugin"
        seen = []
        with mock.patch.object(sys, "argv", ["runlog", "list", "--json"]), mock.patch(
            "runlog_store.cli.app.app", side_effect=lambda: seen.append(
                os.environ["PYDANTIC_DISABLE_PLUGINS"]
            )
        ):
            main()
        assert seen == ["someplugin"], seen
        assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "someplugin"
        """,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("annotation", "options", "values"),
    [
        (str, {}, ["", "x", " spaced ", "ünï", "--", "0"]),
        (int, {"min": 0}, ["0", "7", "007", "20", "-1", "+5", " 5", "1_000", "x", "", "3.0", "٣"]),
        (int, {"min": 1, "max": 10}, ["0", "1", "10", "11"]),
        (bool, {}, [True, False, "true", "0", "x"]),
        (Path, {}, ["", "config.yaml", "missing/file", "."]),
        (Path, {"exists": True}, ["config.yaml", "missing", "."]),
        (Path, {"dir_okay": False}, ["config.yaml", "."]),
    ],
)
def test_plain_values_are_read_as_typer_reads_them(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    annotation: type,
    options: dict[str, Any],
    values: list[object],
) -> None:
    """What ``_PlainValue`` reads without pydantic is what typer's own reading gives, value
    for value, and what it does not read (out of range, not a number) fails with typer's
    words."""
    import typer
    from typer._click.exceptions import BadParameter
    from typer._coercion import build_runtime_param
    from typer.main import get_command

    from runlog_store.cli.app import _Command, _is_plain, _PlainValue

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("")
    probe = typer.Typer()

    def command(value: object = None) -> None:
        """A command of one option."""

    # Set, not written: this module's annotations are strings, read where it is not known.
    command.__annotations__["value"] = Annotated[annotation | None, typer.Option(**options)]
    probe.command(cls=_Command)(command)

    @probe.command()
    def other() -> None:
        """Two commands, so that ``command`` is one of a group."""

    group = get_command(probe)
    ctx = group.make_context("probe", ["command"])
    param = next(p for p in group.commands["command"].params if p.name == "value")
    assert _is_plain(param)
    plain = _PlainValue(parameter_info=param.type_descriptor.parameter_info, annotation=annotation)
    typers = build_runtime_param(param.type_descriptor)

    def outcome(reader: Any, value: object) -> object:
        try:
            read = reader.coerce(value, param=param, ctx=ctx)
        except BadParameter as exc:
            return ("error", exc.format_message())
        return (type(read), read)

    for value in values:
        assert outcome(plain, value) == outcome(typers, value), value


def test_every_public_name_is_there() -> None:
    """The names imported on first use are the ones the package lists, and each is found."""
    namespace: dict[str, object] = {}
    exec("from runlog_store import *", namespace)
    assert set(runlog_store.__all__) <= set(namespace)
    assert set(runlog_store.__all__) <= set(dir(runlog_store))
    assert runlog_store.RunLog.__module__ == "runlog_store.models"
    assert runlog_store.exceptions.RunLogStoreError.__name__ == "RunLogStoreError"
    with pytest.raises(AttributeError, match="no_such_name"):
        runlog_store.no_such_name  # noqa: B018


def test_version_is_the_distributions() -> None:
    from importlib.metadata import version

    assert runlog_store.__version__ == version("runlog-store")


def test_builtin_types_are_the_package_entry_points() -> None:
    """The types found by name without reading entry points are those pyproject.toml
    registers, name for name and class for class."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"]
    for group in (registry.STORE_GROUP, registry.CATALOG_GROUP):
        assert registry.BUILTIN[group] == declared[group]


def test_renderer_status_names_are_the_models() -> None:
    from runlog_store import models

    assert (render.SUCCESS, render.FAIL) == (models.SUCCESS, models.FAIL)
