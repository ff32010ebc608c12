"""The typed errors: every call on a missing run, and run ids no store may hold."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest

from runlog_store import BaseRunLogStore, RunLog
from runlog_store.exceptions import InvalidRunIdError, RunLogNotFoundError
from runlog_store.testing.store.suite import StorageListing, StoreSuite
from runlog_store.testing.store.tree import json_param

# Run ids no store may use (docs/format.md): they would leave a log folder, or cannot be names.
BAD_RUN_IDS = (
    "",
    ".",
    "..",
    ".hidden",
    "../escape",
    "../../etc/passwd",
    "/absolute",
    "a/b",
    "a\\b",
    "nul\x00byte",
    "tab\there",
    "new\nline",
    "a" * 201,
    "\ud800",
)


def run_calls(store: BaseRunLogStore, run_id: str) -> dict[str, Callable[[], object]]:
    """Every call of the store API that names a run, on ``run_id``."""
    return {
        "get_run_log_by_id": lambda: store.get_run_log_by_id(run_id),
        "get_run_log_by_id(full)": lambda: store.get_run_log_by_id(run_id, full=True),
        "get_run_log_json": lambda: store.get_run_log_json(run_id),
        "update_run_log_status": lambda: store.update_run_log_status(run_id, "FAIL"),
        "set_parameters": lambda: store.set_parameters(run_id, {"a": json_param(1)}),
        "set_parameters(branch)": lambda: store.set_parameters(run_id, {"a": json_param(1)}, "s.0"),
        "get_parameters": lambda: store.get_parameters(run_id),
        "set_run_config": lambda: store.set_run_config(run_id, {"a": 1}),
        "get_run_config": lambda: store.get_run_config(run_id),
        "add_step_log": lambda: store.add_step_log(store.create_step_log("s", "s"), run_id),
        "get_step_log": lambda: store.get_step_log("s", run_id),
        "add_branch_log": lambda: store.add_branch_log(store.create_branch_log("s.0"), run_id),
        "get_branch_log": lambda: store.get_branch_log("s.0", run_id),
        "get_branch_log('')": lambda: store.get_branch_log("", run_id),
        "add_job_log": lambda: store.add_job_log(run_id, store.create_job_log()),
        "get_job_log": lambda: store.get_job_log(run_id),
        "get_run_logs(run_ids)": lambda: store.get_run_logs(run_ids=[run_id]),
    }


def wrong_outcomes(
    calls: dict[str, Callable[[], object]],
    expected: tuple[type[Exception], ...],
    run_id: str | None = None,
) -> dict[str, str]:
    """What each call did that it should not have: no error, another error, or the expected
    error naming another run than ``run_id`` (in its ``run_id`` or its message)."""
    wrong = {}
    for name, call in calls.items():
        try:
            call()
        except expected as exc:
            named = getattr(exc, "run_id", None)
            if run_id is not None and named != run_id:
                wrong[name] = f"{type(exc).__name__} naming run {named!r}"
            elif run_id is not None and run_id not in str(exc):
                wrong[name] = f"{type(exc).__name__} whose message does not name the run: {exc}"
        except Exception as exc:
            wrong[name] = f"{type(exc).__name__}: {exc}"
        else:
            wrong[name] = "no error"
    return wrong


class ErrorTests(StoreSuite):
    """A missing run is ``RunLogNotFoundError`` from every call; an invalid run id is refused
    before storage is touched."""

    def test_every_call_on_a_missing_run_is_run_log_not_found(self, store: BaseRunLogStore) -> None:
        missing = "never-created"
        wrong = wrong_outcomes(run_calls(store, missing), (RunLogNotFoundError,), missing)
        assert wrong == {}, "calls on a missing run must raise RunLogNotFoundError"
        with pytest.raises(RunLogNotFoundError):
            store.get_run_log_by_id(missing)  # no failed call created it
        if self._lists(store):
            assert store.list_run_ids() == []

    def test_invalid_run_ids_are_refused_before_storage(
        self, store: BaseRunLogStore, storage_listing: StorageListing | None
    ) -> None:
        """Writes of an invalid run id raise InvalidRunIdError; reads and updates raise it or
        RunLogNotFoundError (nothing can be stored under such an id); storage is untouched."""
        store.create_run_log("kept", tag="k")
        before = storage_listing() if storage_listing else None
        wrong: dict[str, str] = {}
        for bad in BAD_RUN_IDS:
            creates: dict[str, Callable[[], object]] = {
                "create_run_log": partial(store.create_run_log, bad),
                "put_run_log": partial(store.put_run_log, RunLog.model_construct(run_id=bad)),
            }
            for name, outcome in wrong_outcomes(creates, (InvalidRunIdError,)).items():
                wrong[f"{name}({bad!r})"] = outcome
            allowed = (InvalidRunIdError, RunLogNotFoundError)
            for name, outcome in wrong_outcomes(run_calls(store, bad), allowed).items():
                wrong[f"{name}({bad!r})"] = outcome
        assert wrong == {}
        if storage_listing is not None:
            assert storage_listing() == before, "a refused run id changed the storage"
        assert store.get_run_log_by_id("kept", full=True).tag == "k"
        if self._lists(store):
            assert store.list_run_ids() == ["kept"]


__all__ = ["BAD_RUN_IDS", "ErrorTests", "run_calls"]
