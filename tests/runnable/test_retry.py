"""runnable's retry of a failed run (``runnable retry``, which sets RUNNABLE_RETRY_RUN_ID), on
runlog-store: the steps that succeeded are skipped, the failed ones run again, the run ends
SUCCESS."""

from __future__ import annotations

import pytest

from runlog_store import load_store

from .harness import Project, succeeded

BRANCHES = 8
FAILING = {2, 5}


@pytest.mark.parametrize("store_type", ["runlog-chunked-fs", "runlog-file-system"])
def test_failed_steps_run_again_and_the_rest_is_skipped(project: Project, store_type: str) -> None:
    config = project.config("retry.yaml", store_type)
    (project.folder / "fail-once").touch()

    failed = project.run_sdk("flaky", config, "flaky-run", {"branches": BRANCHES})
    assert failed.returncode != 0, failed.tail()
    store = load_store(config)
    first = store.get_run_log_by_id("flaky-run", full=True)
    assert first.status == "FAIL"
    train = first.steps["train"]
    assert train.status == "FAIL"
    for i in range(BRANCHES):
        branch = train.branches[f"train.{i}"]
        middle = branch.steps[f"train.{i}.middle"]
        if i in FAILING:
            assert branch.status == "FAIL"
            assert [a.status for a in middle.attempts] == ["FAIL"]
            assert f"train.{i}.last" not in branch.steps
        else:
            assert branch.status == "SUCCESS"
            assert [a.status for a in middle.attempts] == ["SUCCESS"]
    assert "report" not in first.steps

    (project.folder / "fail-once").unlink()
    retried = project.retry(config, "flaky-run")
    succeeded(retried)

    run = store.get_run_log_by_id("flaky-run", full=True)
    assert run.status == "SUCCESS"
    assert run.steps["train"].status == "SUCCESS"
    # prepare succeeded the first time: skipped, still one attempt.
    assert [a.status for a in run.steps["prepare"].attempts] == ["SUCCESS"]
    for i in range(BRANCHES):
        branch = run.steps["train"].branches[f"train.{i}"]
        assert branch.status == "SUCCESS"
        attempts = {
            name.rsplit(".", 1)[1]: [a.status for a in step.attempts]
            for name, step in branch.steps.items()
        }
        expected_middle = ["FAIL", "SUCCESS"] if i in FAILING else ["SUCCESS"]
        assert attempts["first"] == ["SUCCESS"], f"branch {i} ran first again"
        assert attempts["middle"] == expected_middle
        assert attempts["last"] == ["SUCCESS"]
        assert branch.parameters["c"].value == (i + 100) * 2 + 1
    assert run.parameters["total"].value == sum((i + 100) * 2 + 1 for i in range(BRANCHES))
    assert [a.status for a in run.steps["report"].attempts] == ["SUCCESS"]
