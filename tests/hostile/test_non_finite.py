"""NaN and the infinities, as runnable's ``json.dump`` writes them (the bare tokens ``NaN``,
``Infinity`` and ``-Infinity``): every store reads them, keeps them through writes, and gives
them back as floats, the same on every store."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore as RunnableChunkedFs
from extensions.run_log_store.file_system import FileSystemRunLogstore as RunnableFileSystem
from runnable import datastore as runnable_models

from runlog_store import (
    BaseRunLogStore,
    BranchLog,
    JsonParameter,
    MetricParameter,
    RunLog,
    StepAttempt,
    create_store,
)

from .tampering import edit_run_document, run_document

NAN, INF = float("nan"), float("inf")


def _non_finite(value: Any) -> str:
    """What a value is, comparable across nan (nan != nan)."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if value in (INF, -INF):
        return "+inf" if value > 0 else "-inf"
    return repr(value)


def _parameters() -> dict[str, Any]:
    return {
        "nan": JsonParameter(kind="json", value=NAN),
        "inf": MetricParameter(kind="metric", value=INF),
        "ninf": JsonParameter(kind="json", value=[-INF, 1.5]),
    }


def _shape(parameters: dict[str, Any]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        return [one(v) for v in value] if isinstance(value, list) else _non_finite(value)

    return {name: one(p.value) for name, p in parameters.items()}


EXPECTED = {"nan": "nan", "inf": "+inf", "ninf": ["-inf", "1.5"]}


def test_non_finite_values_round_trip_through_the_api(store: BaseRunLogStore) -> None:
    store.create_run_log("r")
    store.set_parameters("r", _parameters())
    store.add_step_log(store.create_step_log("map", "map"), "r")
    store.add_branch_log(BranchLog(internal_name="map.0", status="PROCESSING"), "r")
    store.set_parameters("r", _parameters(), internal_branch_name="map.0")
    step = store.create_step_log("work", "map.0.work")
    step.attempts.append(StepAttempt(status="SUCCESS", output_parameters=_parameters()))
    store.add_step_log(step, "r")
    store.set_run_config("r", {"threshold": NAN})
    for stage in ("running", "ended"):
        assert _shape(store.get_parameters("r")) == EXPECTED, stage
        assert _shape(store.get_parameters("r", "map.0")) == EXPECTED, stage
        found = store.get_step_log("map.0.work", "r")
        assert _shape(found.attempts[0].output_parameters) == EXPECTED, stage
        full = store.get_run_log_by_id("r", full=True)
        assert _shape(full.parameters) == EXPECTED, stage
        assert _shape(full.find_branch("map.0").parameters) == EXPECTED, stage
        assert _non_finite(store.get_run_config("r")["threshold"]) == "nan", stage
        data = store.get_run_log_json("r")
        for reader in (json.loads(data), RunLog.model_validate_json(data).model_dump()):
            assert _shape_of_dump(reader["parameters"]) == EXPECTED, stage
        store.update_run_log_status("r", "SUCCESS")  # ends (and folds) the run


def _shape_of_dump(parameters: dict[str, Any]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        return [one(v) for v in value] if isinstance(value, list) else _non_finite(value)

    return {name: one(p["value"]) for name, p in parameters.items()}


def _runnable_run(store: Any) -> None:
    """A run written by runnable's own store, with non-finite parameters and metrics."""
    store.create_run_log(run_id="r", status="PROCESSING")
    store.set_parameters(
        run_id="r",
        parameters={
            "nan": runnable_models.JsonParameter(kind="json", value=NAN),
            "inf": runnable_models.MetricParameter(kind="metric", value=INF),
            "ninf": runnable_models.JsonParameter(kind="json", value=[-INF, 1.5]),
        },
    )
    step = store.create_step_log("first", "first")
    step.status = "SUCCESS"
    store.add_step_log(step, "r")


def test_a_run_runnables_file_system_store_wrote(tmp_path: Path) -> None:
    """runnable's file-system store writes its run with json.dump: bare NaN and infinities."""
    folder = tmp_path / "logs"
    _runnable_run(RunnableFileSystem(log_folder=str(folder)))
    assert b"NaN" in (folder / "r.json").read_bytes()
    ours = create_store("file-system", log_folder=str(folder), fsync=False)
    assert _shape(ours.get_parameters("r")) == EXPECTED
    assert _shape(ours.get_run_log_by_id("r", full=True).parameters) == EXPECTED
    ours.add_step_log(ours.create_step_log("second", "second"), "r")
    ours.set_parameters("r", {"more": JsonParameter(kind="json", value=NAN)})
    ours.update_run_log_status("r", "SUCCESS")
    after = ours.get_run_log_by_id("r", full=True)
    assert _shape(after.parameters) == {**EXPECTED, "more": "nan"}
    assert list(after.steps) == ["first", "second"]
    # ... and runnable reads back what we wrote, the values still there.
    back = RunnableFileSystem(log_folder=str(folder)).get_run_log_by_id("r", full=True)
    assert _shape(back.parameters) == {**EXPECTED, "more": "nan"}


def test_runnables_chunked_store_reads_what_ours_wrote(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    ours = create_store("chunked-fs", log_folder=str(folder), fsync=False)
    ours.create_run_log("r")
    ours.set_parameters("r", _parameters())
    ours.add_step_log(ours.create_step_log("first", "first"), "r")
    ours.update_run_log_status("r", "SUCCESS")  # folded into runnable's documents
    assert b"-Infinity" in (folder / "r" / "RunLog.json").read_bytes()
    back = RunnableChunkedFs(log_folder=str(folder)).get_run_log_by_id("r", full=True)
    assert _shape(back.parameters) == EXPECTED
    assert list(back.steps) == ["first"]


def test_a_stored_document_with_non_finite_tokens(persistent_store: BaseRunLogStore) -> None:
    store = persistent_store
    store.create_run_log("r")
    store.add_step_log(store.create_step_log("first", "first"), "r")

    def plant(document: dict[str, Any]) -> None:
        document["parameters"] = {
            "nan": {"kind": "json", "value": NAN, "description": NAN},
            "inf": {"kind": "metric", "value": INF, "description": INF},
            "ninf": {"kind": "json", "value": [-INF, 1.5], "description": [-INF, 1.5]},
        }

    edit_run_document(store, "r", plant)  # json.dumps writes NaN, Infinity, -Infinity
    assert b"-Infinity" in run_document(store, "r")[1]
    assert _shape(store.get_parameters("r")) == EXPECTED
    store.add_step_log(store.create_step_log("second", "second"), "r")
    store.set_parameters("r", {"more": JsonParameter(kind="json", value=-INF)})
    store.update_run_log_status("r", "SUCCESS")
    full = store.get_run_log_by_id("r", full=True)
    assert _shape(full.parameters) == {**EXPECTED, "more": "-inf"}
    assert list(full.steps) == ["first", "second"]
