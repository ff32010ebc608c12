"""Run ids that would leave the log folder are refused before anything touches disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runlog_store import RunLog
from runlog_store._paths import _checked_run_id, is_plain_run_id
from runlog_store.exceptions import InvalidRunIdError

from ..conftest import STORE_TYPES, make_store, store_config

BAD_RUN_IDS = [
    "../x",
    "../../etc/passwd",
    "/abs/path",
    "a/b",
    "a\\b",
    "x\x00y",
    "",
    ".",
    "..",
    ".hidden",
    "tab\there",
    "new\nline",
    "a" * 201,
    "\ud800",
]


@pytest.mark.parametrize("type_name", STORE_TYPES)
@pytest.mark.parametrize("run_id", BAD_RUN_IDS, ids=repr)
def test_escaping_run_ids_are_refused(
    type_name: str, run_id: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    folder = tmp_path / "logs"
    store = make_store(type_name, folder, **store_config(request, type_name))
    with pytest.raises(InvalidRunIdError) as err:
        store.create_run_log(run_id)
    assert err.value.run_id in (run_id, repr(run_id))
    if type_name != "buffered":
        for call in (
            lambda: store.get_run_log_by_id(run_id),
            lambda: store.get_run_log_by_id(run_id, full=True),
            lambda: store.update_run_log_status(run_id, "FAIL"),
            lambda: store.add_step_log(store.create_step_log("s", "s"), run_id),
            lambda: store.get_run_log_json(run_id),
        ):
            with pytest.raises(InvalidRunIdError):
                call()
    with pytest.raises(InvalidRunIdError):
        store.put_run_log(RunLog.model_construct(run_id=run_id))
    assert not folder.exists() or list(folder.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["logs"])


def test_good_unusual_run_ids_round_trip(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    for type_name in STORE_TYPES:
        store = make_store(type_name, tmp_path / type_name, **store_config(request, type_name))
        for run_id in ("with space", "ünïcode-rün", "a" * 200, "dots.in.id", "x..y"):
            store.create_run_log(run_id)
            assert store.get_run_log_by_id(run_id).run_id == run_id


@settings(max_examples=3000, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="ascii"), max_size=205)
    | st.sampled_from([*BAD_RUN_IDS, "a" * 200, ".", "x.", "é", "a\x7fb", "run-1"])
    | st.text(max_size=8)
)
def test_the_quick_check_of_a_name_accepts_only_run_ids_and_every_ascii_one(name: str) -> None:
    """``is_plain_run_id`` (``validate_run_id``'s check of the common case) says yes only to
    names the rules one by one accept, and to every ASCII one they accept."""
    try:
        _checked_run_id(name)
        valid = True
    except InvalidRunIdError:
        valid = False
    assert is_plain_run_id(name) == (valid and name.isascii())
