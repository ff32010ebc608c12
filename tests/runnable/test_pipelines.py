"""The example pipeline, 64 branches wide, run by runnable 0.50 itself on runlog-store.

prepare -> train (a map of 64 branches x load, fit, score, run in a multiprocessing Pool:
``enable_parallel: true``) -> evaluate (a parallel step) -> report (the fan-in, which fails the
run unless it saw every branch's values and every shard). Files go through the catalog both
ways and ``calibration`` is an object parameter. On runlog-chunked-fs (runnable's YAML),
runlog-file-system (SDK, SHA-256 digests) and runlog-chunked-minio with the runlog-minio
catalog (SDK) on a real MinIO server. Each run is then read back with runlog-store and checked
with ``runlog verify``.
"""

from __future__ import annotations

from typing import Any

import pytest

from runlog_store import RunLog, load_store

from .harness import Project, shape, succeeded

BRANCHES = 64
BRANCH_STEPS = ("load", "fit", "score", "success")
# Every value a step returns, with the kind runnable records it as.
STEP_OUTPUTS = {
    "load": {"rows": "json"},
    "fit": {"weight": "json"},
    "score": {"accuracy": "metric", "seen": "json"},
}


def check_run(run: RunLog, branches: int) -> None:
    """Everything the 64-branch run must have recorded, step by step and value by value."""
    assert run.status == "SUCCESS"
    statuses = shape(run)
    assert {name for name, (status, _) in statuses.items() if status != "SUCCESS"} == set()

    assert list(run.steps) == ["prepare", "train", "evaluate", "report", "success"]
    train = run.steps["train"]
    assert train.step_type == "map"
    assert sorted(train.branches) == sorted(f"train.{i}" for i in range(branches))
    for i in range(branches):
        branch = train.branches[f"train.{i}"]
        assert list(branch.steps) == [f"train.{i}.{step}" for step in BRANCH_STEPS]
        for step_name, outputs in STEP_OUTPUTS.items():
            step = branch.steps[f"train.{i}.{step_name}"]
            assert len(step.attempts) == 1
            attempt = step.attempts[0]
            assert attempt.status == "SUCCESS"
            assert attempt.input_parameters["item"].value == i
            assert {k: p.kind for k, p in attempt.output_parameters.items()} == outputs
        assert {k: p.kind for k, p in branch.parameters.items()} == {
            "rows": "json",
            "weight": "json",
            "accuracy": "metric",
            "seen": "json",
        }
        assert branch.parameters["weight"].value == i * 3 + 1
        assert branch.parameters["seen"].value == i
        score = branch.steps[f"train.{i}.score"].attempts[0]
        assert set(score.user_defined_metrics) == {"accuracy"}
        load = branch.steps[f"train.{i}.load"]
        assert [(dc.name, dc.stage) for dc in load.data_catalog] == [("data/settings.json", "get")]

    shards = {f"data/shards/shard-{i:04d}.json" for i in range(branches)}
    evaluate = run.steps["evaluate"]
    assert sorted(evaluate.branches) == ["evaluate.settings", "evaluate.shards"]
    count = evaluate.branches["evaluate.shards"].steps["evaluate.shards.count"]
    assert {(dc.name, dc.stage) for dc in count.data_catalog} == {(s, "put") for s in shards}

    parameters = run.parameters
    assert {k: p.kind for k, p in parameters.items()} == {
        "branches": "json",
        "items": "json",
        "calibration": "object",
        "rows": "json",
        "weight": "json",
        "accuracy": "json",
        "seen": "json",
        "shard_count": "json",
        "settings_ok": "json",
        "best_accuracy": "metric",
        "fan_in_saw": "json",
    }
    # The fan-in saw every branch (it also checked every value and shard, or the run failed).
    assert parameters["seen"].value == list(range(branches))
    assert parameters["fan_in_saw"].value == branches
    assert parameters["shard_count"].value == branches
    report = run.steps["report"]
    assert {(dc.name, dc.stage) for dc in report.data_catalog} == {
        ("data/report.json", "put"),
        *((s, "get") for s in shards),
    }
    prepare = run.steps["prepare"].attempts[0]
    assert prepare.output_parameters["calibration"].kind == "object"


def check_verify(project: Project, config: str, run_id: str, branches: int = BRANCHES) -> None:
    verified = project.runlog("verify", run_id, "--config", config)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # The table lists what was checked: the settings, every shard and the report.
    assert f"shard-{branches - 1:04d}.json" in verified.stdout.replace("\n", "")


def test_yaml_pipeline_on_runlog_chunked_fs(project: Project) -> None:
    config = project.config("chunked.yaml", "runlog-chunked-fs")
    finished = project.run_yaml("pipeline.yaml", config, "fanout", {"branches": BRANCHES})
    succeeded(finished)
    run = load_store(config).get_run_log_by_id("fanout", full=True)
    check_run(run, BRANCHES)
    # The map really ran in the Pool: runnable says so only when the store allows it.
    assert "Parallel execution was requested but" not in finished.output
    check_verify(project, str(config), "fanout")
    assert (project.log_folder / "fanout" / "RunLog.json").is_file()


def test_sdk_pipeline_on_runlog_file_system_in_parallel(project: Project) -> None:
    """runnable's own file-system store makes runnable run branches one by one; ours is safe
    for the Pool. Digests are SHA-256, as runnable records them. Without fsync (as runnable's
    stores): every write rewrites the whole run, and flushing each would triple the time."""
    config = project.config(
        "fs.yaml",
        "runlog-file-system",
        store_config={"log_folder": str(project.log_folder), "fsync": False},
        catalog_config={
            "catalog_location": str(project.catalog_folder),
            "hash_algorithm": "sha256",
            "fsync": False,
        },
    )
    finished = project.run_sdk("pipeline", config, "fanout-fs", {"branches": BRANCHES})
    succeeded(finished)
    assert "Parallel execution was requested but" not in finished.output
    run = load_store(config).get_run_log_by_id("fanout-fs", full=True)
    check_run(run, BRANCHES)
    settings = run.steps["prepare"].data_catalog[0]
    assert ":" not in settings.data_hash and len(settings.data_hash) == 64
    check_verify(project, str(config), "fanout-fs")
    assert (project.log_folder / "fanout-fs.json").is_file()


@pytest.fixture
def minio_settings(minio_config: dict[str, str]) -> dict[str, Any]:
    return dict(minio_config)


def test_sdk_pipeline_on_runlog_chunked_minio_with_minio_catalog(
    project: Project, minio_settings: dict[str, Any]
) -> None:
    catalog = {**minio_settings, "bucket": f"{minio_settings['bucket']}-catalog"}
    config = project.config(
        "minio.yaml",
        "runlog-chunked-minio",
        store_config=minio_settings,
        catalog_type="runlog-minio",
        catalog_config=catalog,
    )
    finished = project.run_sdk("pipeline", config, "fanout-minio", {"branches": BRANCHES})
    succeeded(finished)
    run = load_store(config).get_run_log_by_id("fanout-minio", full=True)
    check_run(run, BRANCHES)
    check_verify(project, str(config), "fanout-minio")
    # Nothing of the run or its catalog landed on the local disk.
    assert not project.log_folder.exists()
    assert not project.catalog_folder.exists()


def test_sdk_pipeline_with_the_content_catalog(project: Project) -> None:
    """runlog-content-fs: every content stored once across runs, a manifest per run."""
    config = project.config(
        "content.yaml",
        "runlog-chunked-fs",
        {"log_folder": str(project.log_folder), "fsync": False},
        catalog_type="runlog-content-fs",
    )
    for run_id in ("content-1", "content-2"):
        succeeded(project.run_sdk("pipeline", config, run_id, {"branches": 16}))
        run = load_store(config).get_run_log_by_id(run_id, full=True)
        check_run(run, 16)
        check_verify(project, str(config), run_id, 16)
    # The second run's shards are the first run's contents: each stored once.
    objects = [p for p in (project.catalog_folder / "objects").rglob("*") if p.is_file()]
    shards = [p for p in objects if p.read_bytes().startswith(b'{"item": ')]
    assert len(shards) == 16
