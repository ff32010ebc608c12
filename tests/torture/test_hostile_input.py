"""Hostile input, generated (hypothesis): run ids, internal names, configuration files and
chunk bytes. Only the package's typed errors may come out, and nothing may be written outside
the log folder.

``RUNLOG_HYPOTHESIS_EXAMPLES`` sets the examples per property (default 300).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runlog_store import JsonParameter, create_store, load_store
from runlog_store.exceptions import (
    BranchLogNotFoundError,
    ConfigurationError,
    CorruptChunkError,
    InvalidNameError,
    InvalidRunIdError,
)

EXAMPLES = int(os.environ.get("RUNLOG_HYPOTHESIS_EXAMPLES", "300"))
CONFIG = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

hostile_text = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(["/", "\\", ".", "\x00", "~", "%", " ", "a", "é", "\n"])),
    st.sampled_from(["..", ".", "../x", "/etc/passwd", "a/../../b", "\x00", "x" * 300, "~x"]),
)


def _everything_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@CONFIG
@given(run_id=hostile_text)
def test_run_ids_stay_inside_the_log_folder(run_id: str) -> None:
    with tempfile.TemporaryDirectory() as base:
        root = Path(base)
        for type_name in ("file-system", "chunked-fs"):
            logs = root / type_name
            store = create_store(type_name, log_folder=str(logs), fsync=False)
            try:
                store.create_run_log(run_id)
            except InvalidRunIdError:
                assert _everything_under(root) <= {type_name}
                continue
            assert store.get_run_log_by_id(run_id).run_id == run_id
            created = [p for p in logs.iterdir() if not p.name.startswith(".")]
            assert [p.name for p in created] in ([run_id], [f"{run_id}.json"])
        assert all(p.resolve().is_relative_to(root.resolve()) for p in root.rglob("*"))


@CONFIG
@given(name=hostile_text)
def test_internal_names_round_trip_or_are_refused(name: str) -> None:
    with tempfile.TemporaryDirectory() as base:
        logs = Path(base) / "logs"
        store = create_store("chunked-fs", log_folder=str(logs), fsync=False)
        store.create_run_log("r")
        try:
            store.add_step_log(store.create_step_log("s", name), "r")
        except (InvalidNameError, BranchLogNotFoundError):
            return  # refused: a name runnable cannot store, or a step of a branch not stored
        assert store.get_step_log(name, "r").internal_name == name
        folders = {p.parent for p in logs.rglob("*") if p.is_file()}
        assert folders <= {logs / "r", logs / "r" / ".journals"}  # nothing left the run
        run = store.get_run_log_by_id("r", full=True)
        assert name in {s.internal_name for s in run.iter_steps()}


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
config_documents = st.one_of(
    yaml_values,
    st.fixed_dictionaries(
        {
            "run-log-store": st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["chunked-fs", "file-system", "buffered", "s3", 1]),
                    "config": yaml_values,
                }
            )
        }
    ),
    st.text(max_size=200),
)


@CONFIG
@given(document=config_documents)
def test_config_files_load_or_fail_with_a_configuration_error(document: object) -> None:
    with tempfile.TemporaryDirectory() as base:
        path = Path(base) / "config.yaml"
        if isinstance(document, str):
            path.write_text(document)
        else:
            path.write_text(yaml.safe_dump(document))
        cwd = os.getcwd()
        os.chdir(base)
        try:
            load_store(path)
        except ConfigurationError as exc:
            assert str(path) in str(exc) or exc.key
        finally:
            os.chdir(cwd)


chunk_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda d: json.dumps(d).encode(), yaml_values),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(min_value=1, max_value=5000)),
    st.builds(lambda n: b'{"internal_name":' * n, st.integers(min_value=1, max_value=2000)),
    st.sampled_from(
        [b"", b"{", b'{"internal_name": 3}', b'{"internal_name": "x", "branches": []}']
    ),
)


@CONFIG
@given(data=chunk_bytes, kind=st.sampled_from(["StepLog", "BranchLog"]))
def test_chunk_bytes_read_or_fail_with_a_corrupt_chunk_error(data: bytes, kind: str) -> None:
    with tempfile.TemporaryDirectory() as base:
        logs = Path(base) / "logs"
        store = create_store("chunked-fs", log_folder=str(logs), fsync=False)
        store.create_run_log("r")
        store.add_step_log(store.create_step_log("good", "good"), "r")
        (logs / "r" / f"{kind}-hostile.json").write_bytes(data)
        try:
            store.get_run_log_by_id("r", full=True)
        except CorruptChunkError as exc:
            assert exc.path.endswith(f"{kind}-hostile.json") or exc.path.endswith("r")
        salvaged = store.salvage_run_log("r")
        assert "good" in salvaged.run_log.steps


# --- hostile journal bytes ------------------------------------------------------------------

WRITTEN = 8  # steps s0..s7, root parameters p0..p7, and step x written WRITTEN times

journal_damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
    st.tuples(st.just("duplicate"), st.floats(0, 1), st.floats(0, 1)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("zero tail"), st.floats(0, 1)),
)


def _damaged(data: bytes, damage: tuple[object, ...]) -> bytes:
    kind, where = damage[0], int(float(damage[1]) * len(data))  # type: ignore[arg-type]
    if kind == "truncate":
        return data[:where]
    if kind == "flip":
        if not data:
            return data
        at = min(where, len(data) - 1)
        return data[:at] + bytes([data[at] ^ (1 << int(damage[2]))]) + data[at + 1 :]  # type: ignore[call-overload]
    if kind == "duplicate":
        end = where + int(float(damage[2]) * (len(data) - where))  # type: ignore[arg-type]
        return data[:end] + data[where:end] + data[end:]
    if kind == "insert":
        return data[:where] + bytes(damage[2]) + data[where:]  # type: ignore[call-overload]
    return data[:where] + b"\0" * (len(data) - where)  # a cut that kept the size only


@CONFIG
@given(damage=st.lists(journal_damage, min_size=1, max_size=3))
def test_hostile_journal_bytes_give_a_typed_error_or_a_salvage_never_a_wrong_run(
    damage: list[tuple[object, ...]],
) -> None:
    """A journal truncated, with bits flipped, frames duplicated, garbage inserted or a tail
    zeroed: a read gives the run or a CorruptChunkError naming the journal, a salvage always
    reads, and whatever is read is something that was written (never a changed value, never a
    value from another key)."""
    with tempfile.TemporaryDirectory() as base:
        logs = Path(base) / "logs"
        store = create_store("chunked-fs", log_folder=str(logs), fsync=False)
        store.create_run_log("r")
        for i in range(WRITTEN):
            step = store.create_step_log(f"s{i}", f"s{i}")
            step.message = f"written {i}"
            store.add_step_log(step, "r")
            store.set_parameters("r", {f"p{i}": JsonParameter(kind="json", value=i)})
            again = store.create_step_log("x", "x")
            again.message = f"version {i}"
            store.add_step_log(again, "r")
        (journal,) = (logs / "r" / ".journals").iterdir()
        data = journal.read_bytes()
        for one in damage:
            data = _damaged(data, one)
        journal.write_bytes(data)
        reader = create_store("chunked-fs", log_folder=str(logs), fsync=False)
        documents = []
        try:
            documents.append(json.loads(reader.get_run_log_json("r")))
        except CorruptChunkError as exc:
            assert exc.path == str(journal) and "offset" in str(exc), exc
            assert not all(d[0] == "truncate" for d in damage), "a truncation is a torn tail"
        salvaged = reader.salvage_run_log("r")
        assert {Path(p) for p, _ in salvaged.skipped} <= {journal}
        documents.append(json.loads(salvaged.run_log.model_dump_json()))
        for document in documents:
            for name, step in document["steps"].items():
                if name == "x":
                    assert step["message"] in {f"version {i}" for i in range(WRITTEN)}
                else:
                    assert name in {f"s{i}" for i in range(WRITTEN)}, name
                    assert step["message"] == f"written {name[1:]}"
            for name, parameter in document["parameters"].items():
                assert parameter["value"] == int(name[1:]), (name, parameter)
