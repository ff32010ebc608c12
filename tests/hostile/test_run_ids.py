"""A stored document that names another run: reading it is an error, and copying it never
touches the run it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runlog_store import BaseRunLogStore, create_store
from runlog_store.exceptions import CorruptChunkError, RunIdMismatchError, RunLogStoreError
from runlog_store.ops.transfer import copy_run

from .tampering import document_where, edit_run_document


def _plant_imposter(store: BaseRunLogStore) -> None:
    """Run ``imposter`` whose document says it is run ``victimrun``."""
    store.create_run_log("imposter", tag="forged")
    store.add_step_log(store.create_step_log("first", "first"), "imposter")

    def rename(document: dict[str, Any]) -> None:
        document["run_id"] = "victimrun"

    edit_run_document(store, "imposter", rename)


def test_a_document_naming_another_run_is_refused_by_every_read(
    persistent_store: BaseRunLogStore,
) -> None:
    store = persistent_store
    _plant_imposter(store)
    where = document_where(store, "imposter")
    reads = {
        "get_run_log_by_id": lambda: store.get_run_log_by_id("imposter"),
        "get_run_log_by_id(full)": lambda: store.get_run_log_by_id("imposter", full=True),
        "get_run_log_json": lambda: store.get_run_log_json("imposter"),
        "get_parameters": lambda: store.get_parameters("imposter"),
        "get_run_logs": lambda: store.get_run_logs(run_ids=["imposter"]),
    }
    for what, read in reads.items():
        with pytest.raises(RunIdMismatchError) as raised:
            read()
        error = raised.value
        assert isinstance(error, CorruptChunkError), what
        assert (error.run_id, error.asked, error.found) == ("imposter", "imposter", "victimrun")
        assert where.rsplit("/", 1)[-1] in error.path, (what, error.path)
        assert "victimrun" in str(error) and "imposter" in str(error), str(error)


def test_copying_an_imposter_leaves_the_run_it_names_alone(tmp_path: Path) -> None:
    source = create_store("file-system", log_folder=str(tmp_path / "source"), fsync=False)
    target = create_store("chunked-fs", log_folder=str(tmp_path / "target"), fsync=False)
    target.create_run_log("victimrun", tag="original")
    target.add_step_log(target.create_step_log("kept", "kept"), "victimrun")
    before = target.get_run_log_json("victimrun")
    _plant_imposter(source)
    with pytest.raises(RunIdMismatchError):
        copy_run(source, target, "imposter")
    assert target.get_run_log_json("victimrun") == before
    assert target.get_run_log_by_id("victimrun").tag == "original"
    assert target.list_run_ids() == ["victimrun"]


def test_a_copy_never_replaces_a_run_the_target_has(tmp_path: Path) -> None:
    source = create_store("file-system", log_folder=str(tmp_path / "source"), fsync=False)
    target = create_store("file-system", log_folder=str(tmp_path / "target"), fsync=False)
    source.create_run_log("r", tag="new")
    target.create_run_log("r", tag="old")
    with pytest.raises(RunLogStoreError, match="already exists"):
        copy_run(source, target, "r")
    assert target.get_run_log_by_id("r").tag == "old"
