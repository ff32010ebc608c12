"""The postgres store in ``runlog copy`` and ``runlog gc``: runnable 0.50's runs copied from
their folders into a database, from it to every other persistent store and back into another
database, unchanged and with their catalog files; a copy into a database that has the run
refused; and gc deleting, by the retention section, the runs whose rows were last written long
ago, their rows and catalog files gone, every other run untouched."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from runlog_store.config import load_catalog, load_store
from runlog_store.models import FAIL

from ..cli.test_cli_commands import FIXTURE_RUNS, _canonical, _expected, _fixture_configs, invoke
from ..cli.test_list_search import sweep_run
from ..conftest import OBJECT_TYPES

OTHER_KINDS = ["file-system", "chunked-fs", *OBJECT_TYPES]


def _configured(folder: Path, store: dict[str, Any], **extra: Any) -> Path:
    """A configuration file of ``store`` and a file-system catalog, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    catalog = {"type": "file-system", "config": {"catalog_location": str(folder / "catalog")}}
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({"run-log-store": store, "catalog": catalog, **extra}))
    return config


def _postgres(folder: Path, settings: dict[str, Any], schema: str, **extra: Any) -> Path:
    config = {**settings, "schema_name": f"{settings['schema_name']}_{schema}"}
    return _configured(folder, {"type": "postgres", "config": config}, **extra)


def _other(kind: str, folder: Path, request: pytest.FixtureRequest) -> Path:
    if kind in OBJECT_TYPES:
        minio = request.getfixturevalue("minio_config")
        return _configured(folder, {"type": kind, "config": minio})
    return _configured(
        folder, {"type": kind, "config": {"log_folder": str(folder / "logs"), "fsync": False}}
    )


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_copy_into_postgres_out_to_another_store_and_back_loses_nothing(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, postgres_config: dict[str, Any]
) -> None:
    fixtures = _fixture_configs(tmp_path)
    into = _postgres(tmp_path / "into", postgres_config, "into")
    other = _other(kind, tmp_path / "other", request)
    back = _postgres(tmp_path / "back", postgres_config, "back")
    for run_id, source in FIXTURE_RUNS.items():
        invoke("copy", run_id, "-c", fixtures[source], "--to", into, "--with-catalog")
        invoke("copy", run_id, "-c", into, "--to", other, "--with-catalog")
        invoke("copy", run_id, "-c", other, "--to", back, "--with-catalog")
        for config in (into, other, back):
            found = _canonical(load_store(config).get_run_log_json(run_id))
            assert found == _expected(run_id), (run_id, config)
        files = load_catalog(fixtures[source]).run_files(run_id)
        assert load_catalog(back).run_files(run_id) == files
    assert "all 6 files match" in invoke("verify", "fs-map", "-c", back).stdout
    # A run the database has is refused, and the database keeps its own.
    before = load_store(back).get_run_log_json("fs-map")
    refused = invoke("copy", "fs-map", "-c", other, "--to", back, code=2)
    assert "already exists" in refused.stderr and "nothing was copied" in refused.stderr
    assert load_store(back).get_run_log_json("fs-map") == before


def _written_ago(settings: dict[str, Any], schema: str, run_id: str, days: int) -> None:
    """Date every row of a run back ``days`` days, as if it had been written then (the store
    stamps rows with the server's clock, which a test cannot set)."""
    keys = ("host", "port", "dbname", "user", "password")
    with psycopg.connect(autocommit=True, **{key: settings[key] for key in keys}) as conn:
        for table in ("runs", "nodes"):
            conn.execute(
                f"UPDATE {schema}.{table} SET modified = modified - make_interval(days => %s) "
                "WHERE run_id = %s",
                [days, run_id],
            )


def _rows(settings: dict[str, Any], schema: str) -> dict[str, int]:
    keys = ("host", "port", "dbname", "user", "password")
    with psycopg.connect(**{key: settings[key] for key in keys}) as conn:
        found = conn.execute(
            f"SELECT r.run_id, (SELECT count(*) FROM {schema}.nodes n WHERE n.run_id = r.run_id) "
            f"FROM {schema}.runs r"
        ).fetchall()
    return {run_id: count for run_id, count in found}


def test_gc_deletes_the_runs_the_retention_section_lets_go(
    tmp_path: Path, postgres_config: dict[str, Any]
) -> None:
    retention = {"older_than": "30d", "keep_last": 1, "statuses": ["SUCCESS", "FAIL"]}
    config = _postgres(tmp_path, postgres_config, "gc", retention=retention)
    schema = f"{postgres_config['schema_name']}_gc"
    store = load_store(config)
    runs = {  # run id: (tag, status, days since it was written)
        "old-a": ("x", "SUCCESS", 50),
        "old-b": ("x", FAIL, 40),
        "newest-of-x": ("x", "SUCCESS", 0),
        "recent": ("y", "SUCCESS", 10),
        "old-newest-of-z": ("z", "SUCCESS", 60),
        "old-running": ("x", "PROCESSING", 45),
    }
    catalog = load_catalog(config)
    for run_id, (tag, status, days) in runs.items():
        sweep_run(store, run_id, tag=tag, status=status, ago=timedelta(days=days), branches=2)
        folder = catalog.local_run_folder(run_id)
        assert folder is not None
        (folder / "model.bin").parent.mkdir(parents=True, exist_ok=True)
        (folder / "model.bin").write_bytes(b"x" * 100)
        _written_ago(postgres_config, schema, run_id, days)
    rows_before = _rows(postgres_config, schema)
    assert all(count > 0 for count in rows_before.values())

    decisions = json.loads(invoke("gc", "-c", config, "--dry-run", "--json").stdout)
    actions = {d["run_id"]: d["action"] for d in decisions}
    assert actions == {
        "old-a": "would delete",
        "old-b": "would delete",
        "old-newest-of-z": "kept: newest of its tag",
    }
    assert _rows(postgres_config, schema) == rows_before  # a dry run deletes nothing
    # What deleting a run frees: the bytes its JSON takes in its rows, and its catalog files.
    sizes = {d["run_id"]: d["run_bytes"] for d in decisions if d["action"] == "would delete"}
    assert sizes == {r: store.run_bytes(r) for r in ("old-a", "old-b")}  # type: ignore[attr-defined]
    assert all(size > 500 for size in sizes.values()), sizes

    done = invoke("gc", "-c", config, "--with-catalog").stdout
    freed = sum(sizes.values()) + 2 * 100
    assert f"deleted 2 of 6 runs; freed {freed:,} bytes" in done, done
    kept = {"newest-of-x", "recent", "old-newest-of-z", "old-running"}
    assert set(store.list_run_ids()) == kept
    assert _rows(postgres_config, schema) == {r: rows_before[r] for r in kept}  # nodes too
    for run_id in runs:
        assert bool(catalog.run_files(run_id)) == (run_id in kept), run_id
    # The runs kept read as before.
    assert store.get_run_log_by_id("old-running", full=True).steps["train"].branches
