"""Ages, summaries and the gc decision, without the command line."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runlog_store.exceptions import RunLogStoreError
from runlog_store.models import FAIL, PROCESSING, SUCCESS
from runlog_store.ops.runs import parse_age, summarize
from runlog_store.ops.transfer import first_difference, gc_runs
from runlog_store.stores.file_system import FileSystemRunLogStore


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("45m", 2700),
        ("12h", 43200),
        ("2d", 172800),
        ("1w", 604800),
        ("1d12h", 129600),
        ("0.5h", 1800),
        (" 2D ", 172800),
        ("0s", 0),
    ],
)
def test_ages_people_write(text: str, seconds: float) -> None:
    assert parse_age(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "yesterday", "30", "d", "-1d", "1d 2x", "1y"])
def test_anything_else_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(RunLogStoreError, match=r"--since .* is not an age"):
        parse_age(text, "--since")


def test_summary_of_a_nested_failure_names_the_deepest_failed_step() -> None:
    attempt = {"start_time": "2026-01-01 10:00:00", "end_time": "2026-01-01 10:00:05"}
    run: dict[str, Any] = {
        "run_id": "r",
        "status": FAIL,
        "steps": {
            "outer": {
                "internal_name": "outer",
                "status": FAIL,
                "attempts": [attempt],
                "branches": {
                    "outer.1": {
                        "steps": {
                            "outer.1.inner": {
                                "internal_name": "outer.1.inner",
                                "status": FAIL,
                                "attempts": [{"start_time": "not a time"}],
                                "branches": {},
                            }
                        }
                    }
                },
            }
        },
    }
    summary = summarize(run)
    assert summary.failed_step == "outer.1.inner"
    assert summary.steps == 2 and summary.branches == 1
    assert summary.duration_seconds == 5


def test_first_difference_names_the_path() -> None:
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}) == "a[1].b"
    assert first_difference({"a": 1}, {"a": 1, "c": 2}) == "c"
    assert first_difference({"a": [1]}, {"a": [1]}) is None


def test_gc_keeps_a_run_written_between_its_check_and_its_deletion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileSystemRunLogStore(log_folder=str(tmp_path), fsync=False)
    for run_id, status in (("quiet", SUCCESS), ("woken", SUCCESS), ("open", PROCESSING)):
        store.create_run_log(run_id, status=status)
    real = FileSystemRunLogStore.run_modified
    calls: dict[str, int] = {}

    def modified(self: FileSystemRunLogStore, run_id: str) -> float | None:
        # "woken" is written again after gc first looked at it.
        calls[run_id] = calls.get(run_id, 0) + 1
        found = real(self, run_id)
        return found + calls[run_id] if run_id == "woken" and found else found

    monkeypatch.setattr(FileSystemRunLogStore, "run_modified", modified)
    later = datetime.now() + timedelta(days=2)
    decisions = {d.run_id: d.action for d in gc_runs(store, timedelta(days=1), now=later)}
    assert decisions == {
        "quiet": "deleted",
        "woken": "kept: written during gc",
        "open": "kept: unfinished",
    }
    assert sorted(store.list_run_ids()) == ["open", "woken"]
