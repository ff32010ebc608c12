"""Deeply nested values: one limit for writers and readers, so whatever a store acknowledges is
read back by every reader, and a write past the limit is refused naming what is too deep."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runlog_store import BaseRunLogStore, JsonParameter, RunLog, StepAttempt, _core
from runlog_store.exceptions import NestingTooDeepError

RUN = "deep-run"
LIMIT: int = _core.MAX_NESTING
# Where a root parameter's value sits: {"parameters": {"p": {"value": ...}}}.
ROOT_PARAMETER = 3
# Where an output parameter of step map.0.work sits: run, steps, map, branches, map.0, steps,
# map.0.work, attempts, the attempt, output_parameters, the parameter.
BRANCH_STEP_PARAMETER = 11


def deep(levels: int) -> Any:
    """A JSON value nested ``levels`` deep (lists in lists around a number)."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def depth(value: Any) -> int:
    levels = 0
    while isinstance(value, list):
        value, levels = value[0], levels + 1
    return levels


def _reads_back(store: BaseRunLogStore, run_id: str) -> RunLog:
    """Every full read, as our stores, runnable and the command line make it."""
    run = store.get_run_log_by_id(run_id, full=True)
    data = store.get_run_log_json(run_id)
    assert RunLog.model_validate_json(data).run_id == run_id
    assert json.loads(data)["run_id"] == run_id
    store.get_run_log_by_id(run_id)
    return run


def test_parameters_within_the_limit_read_back_and_deeper_ones_are_refused(
    store: BaseRunLogStore,
) -> None:
    store.create_run_log(RUN)
    fits = LIMIT - ROOT_PARAMETER
    store.set_parameters(RUN, {"ok": JsonParameter(kind="json", value=deep(fits))})
    assert depth(_reads_back(store, RUN).parameters["ok"].value) == fits
    assert depth(store.get_parameters(RUN)["ok"].value) == fits
    for levels in (fits + 1, 198):
        with pytest.raises(NestingTooDeepError) as raised:
            store.set_parameters(RUN, {"deep": JsonParameter(kind="json", value=deep(levels))})
        message = str(raised.value)
        assert raised.value.run_id == RUN
        assert RUN in message and '["deep"]' in message and str(LIMIT) in message, message
        assert "deep" not in _reads_back(store, RUN).parameters


def test_a_step_within_the_limit_reads_back_and_a_deeper_one_is_refused(
    store: BaseRunLogStore,
) -> None:
    store.create_run_log(RUN)
    store.add_step_log(store.create_step_log("map", "map"), RUN)
    store.add_branch_log(store.create_branch_log("map.0"), RUN)
    fits = LIMIT - BRANCH_STEP_PARAMETER
    for levels, accepted in ((fits, True), (fits + 1, False), (198, False)):
        step = store.create_step_log("work", "map.0.work")
        step.attempts.append(
            StepAttempt(output_parameters={"out": JsonParameter(kind="json", value=deep(levels))})
        )
        if accepted:
            store.add_step_log(step, RUN)
            stored = _reads_back(store, RUN).find_step("map.0.work")
            assert depth(stored.attempts[0].output_parameters["out"].value) == levels
            continue
        with pytest.raises(NestingTooDeepError) as raised:
            store.add_step_log(step, RUN)
        message = str(raised.value)
        assert "map.0.work" in message and '["out"]["value"]' in message, message
        assert RUN in message and raised.value.run_id == RUN, message
        stored = _reads_back(store, RUN).find_step("map.0.work")
        assert depth(stored.attempts[0].output_parameters["out"].value) == fits


def test_run_config_past_the_limit_is_refused(store: BaseRunLogStore) -> None:
    store.create_run_log(RUN)
    store.set_run_config(RUN, {"nested": deep(LIMIT - 2)})  # {"run_config": {"nested": ...}}
    with pytest.raises(NestingTooDeepError):
        store.set_run_config(RUN, {"nested": deep(LIMIT - 1)})
    assert depth(_reads_back(store, RUN).run_config["nested"]) == LIMIT - 2
