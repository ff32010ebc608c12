"""What runnable 0.50 calls on a run log store and a catalog, traced in a real parallel run of
the example pipeline (pipelines/tracing.py wraps every method, in every process).

This is how the integration was checked against runnable's source: who calls what, from which
process, with which argument style, and which "not found" errors runnable relies on.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

from .harness import Project, succeeded

BRANCHES = 8


def test_what_runnable_calls(project: Project) -> None:
    config = project.config("trace.yaml", "runlog-chunked-fs")
    trace = project.folder / "trace.jsonl"
    running = project.start(
        [sys.executable, "tracing.py", str(trace), "pipeline.py"],
        config,
        "traced",
        {"branches": BRANCHES},
    )
    succeeded(running.wait())
    calls: list[dict[str, Any]] = [json.loads(line) for line in trace.read_text().splitlines()]
    parent = calls[0]["pid"]

    # runnable's own implementations are never reached, but for its factories of empty models.
    inherited = {c["method"] for c in calls if c["owner"] == "runnable"}
    assert inherited <= {"create_step_log", "create_branch_log", "create_code_identity"}

    # The map's and the parallel step's branches write from Pool workers (2 per Pool here).
    workers = {c["pid"] for c in calls} - {parent}
    assert len(workers) >= 2
    from_workers = Counter(c["method"] for c in calls if c["pid"] != parent)
    for method in ("add_step_log", "get_step_log", "set_parameters", "add_branch_log", "put"):
        assert from_workers[method] > 0, method

    # The probe before the run exists raises runnable's RunLogNotFoundError (ours too).
    first_probe = next(c for c in calls if c["method"] == "get_run_log_by_id")
    assert first_probe["keywords"] == {"run_id": "builtins.str", "full": "builtins.bool"}
    assert "runnable.exceptions.RunLogNotFoundError" in first_probe["raised"]
    assert "runlog_store.exceptions.RunLogNotFoundError" in first_probe["raised"]
    # Fanning out asks for every branch first: runnable's BranchLogNotFoundError each time.
    fan_out = [c for c in calls if c["method"] == "get_branch_log" and "raised" in c]
    assert len(fan_out) == BRANCHES + 2
    assert all("runnable.exceptions.BranchLogNotFoundError" in c["raised"] for c in fan_out)
    assert not [c for c in calls if "raised" in c and c not in fan_out and c is not first_probe]

    # Steps and branches are passed positionally, runs and parameters by keyword; both ways
    # carry runnable's own models, and runnable's models come back.
    adds = [c for c in calls if c["method"] == "add_step_log"]
    assert {tuple(c["positional"]) for c in adds} == {
        ("runnable.datastore.StepLog", "builtins.str")
    }
    sets = [c for c in calls if c["method"] == "set_parameters"]
    assert all(set(c["keywords"]) >= {"run_id", "parameters"} for c in sets)
    reads = ("get_step_log", "get_branch_log")
    returned = {c["returned"] for c in calls if c["method"] in reads and "raised" not in c}
    assert returned == {
        "runnable.datastore.StepLog",
        "runnable.datastore.BranchLog",
        "runnable.datastore.RunLog",  # get_branch_log("") is the run, by runnable's convention
    }
    parameters = {c["returned"] for c in calls if c["method"] == "get_parameters"}
    assert "dict[runnable.datastore.JsonParameter]" in parameters

    # The catalog: put with runnable's keywords, get by name, from parent and workers.
    puts = [c for c in calls if c["method"] == "put"]
    assert {frozenset(c["keywords"]) for c in puts} == {
        frozenset({"name"}),  # execution logs and pickled objects
        frozenset({"name", "allow_file_not_found_exc", "store_copy"}),  # a step's catalog
    }
    assert any(c["method"] == "get" and c["pid"] != parent for c in calls)
