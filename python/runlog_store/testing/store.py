"""``StoreContract``: the behaviour every run log store owes runnable and the tools of this
package, as pytest tests a store's own test module binds to it."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import pytest

from runlog_store import (
    BaseRunLogStore,
    BranchLog,
    CodeIdentity,
    DataCatalog,
    JobLog,
    JsonParameter,
    MetricParameter,
    ObjectParameter,
    RunLog,
    StepAttempt,
    StepLog,
    create_store,
)
from runlog_store.exceptions import (
    BranchLogNotFoundError,
    InvalidRunIdError,
    JobLogNotFoundError,
    RunLogExistsError,
    RunLogNotFoundError,
    StepLogNotFoundError,
)
from runlog_store.testing import _writer
from runlog_store.testing._checks import check_summary, drop_inapplicable, needs

RUN = "contract-run"
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
# Unusual but valid: every store must keep them apart and give them back as they are.
UNUSUAL_RUN_IDS = ("with space", "ünïcode-rün ✓", "dots.in.id", "x..y", "a" * 200)
# The run-level fields a read that is not full must get right.
RUN_FIELDS = {"run_id", "dag_hash", "tag", "status", "parameters", "run_config", "job"}

StorageListing = Callable[[], object]


def build_store(config: dict[str, Any]) -> BaseRunLogStore:
    """``create_store(config["type"], **rest)``: how the suite (and its child processes) build
    a store from a ``store_config``."""
    if not isinstance(config.get("type"), str):
        raise TypeError(
            f"store_config must be a dict with a 'type' (a registered store type name) and the "
            f"store's configuration keys, not {config!r}"
        )
    rest = dict(config)
    return create_store(rest.pop("type"), **rest)


def _json(value: Any) -> JsonParameter:
    return JsonParameter(kind="json", value=value)


def _attempt(status: str = "SUCCESS") -> StepAttempt:
    return StepAttempt(
        attempt_number=1,
        status=status,
        start_time="2026-01-01T00:00:00.000000",
        end_time="2026-01-01T00:00:01.500000",
        input_parameters={"items": _json([0, 1, 2])},
        output_parameters={"x": _json(1), "score": MetricParameter(kind="metric", value=0.75)},
        code_identities=[
            CodeIdentity(
                code_identifier="abc123", code_identifier_type="git", code_identifier_url="u"
            )
        ],
    )


def build_tree(store: BaseRunLogStore, run_id: str = RUN) -> None:
    """A run as runnable writes one: parameters of every kind, a task with an attempt and a
    catalog entry, a map of three branches with a parallel nested in one, and a parallel with a
    map nested in one branch. Branches and steps are added and closed one call at a time."""
    store.create_run_log(run_id, dag_hash="d4g", tag="nightly")
    store.set_run_config(run_id, {"executor": {"type": "local"}, "pipeline": {"name": "p"}})
    store.set_parameters(
        run_id,
        {
            "items": _json([0, 1, 2]),
            "lr": MetricParameter(kind="metric", value=0.1),
            "model": ObjectParameter(kind="object", value="model.pkl"),
        },
    )
    store.update_run_log_status(run_id, "PROCESSING")
    first = store.create_step_log("first", "first")
    store.add_step_log(first, run_id)
    first.status = "SUCCESS"
    first.attempts.append(_attempt())
    first.add_data_catalogs([DataCatalog(name="data/x.csv", data_hash="h", stage="put")])
    store.add_step_log(first, run_id)

    mapped = store.create_step_log("map", "map")
    mapped.step_type = "map"
    store.add_step_log(mapped, run_id)
    for i in range(3):
        name = f"map.{i}"
        store.add_branch_log(store.create_branch_log(name, parameters={"item": _json(i)}), run_id)
        for step_name in ("work", "success"):
            step = store.create_step_log(step_name, f"{name}.{step_name}")
            store.add_step_log(step, run_id)
            step.status = "SUCCESS"
            step.attempts.append(_attempt())
            store.add_step_log(step, run_id)
        branch = store.get_branch_log(name, run_id)
        assert isinstance(branch, BranchLog), f"get_branch_log({name!r}) is not a BranchLog"
        branch.status = "SUCCESS"
        store.add_branch_log(branch, run_id)
    inner = store.create_step_log("par", "map.0.par")
    inner.step_type = "parallel"
    store.add_step_log(inner, run_id)
    store.add_branch_log(store.create_branch_log("map.0.par.left"), run_id)
    store.add_step_log(store.create_step_log("leaf", "map.0.par.left.leaf"), run_id)
    mapped.status = "SUCCESS"
    store.add_step_log(mapped, run_id)  # an old copy without branches: they must stay

    par = store.create_step_log("par", "par")
    par.step_type = "parallel"
    store.add_step_log(par, run_id)
    for side in ("a", "b"):
        store.add_branch_log(store.create_branch_log(f"par.{side}"), run_id)
    nested = store.create_step_log("inner", "par.a.inner")
    nested.step_type = "map"
    store.add_step_log(nested, run_id)
    store.add_branch_log(store.create_branch_log("par.a.inner.0"), run_id)
    store.set_parameters(run_id, {"deep": _json("yes")}, internal_branch_name="par.a.inner.0")
    store.add_step_log(store.create_step_log("leaf", "par.a.inner.0.leaf"), run_id)
    store.update_run_log_status(run_id, "SUCCESS")


def _without_descriptions(document: Any) -> Any:
    if isinstance(document, dict):
        return {k: _without_descriptions(v) for k, v in document.items() if k != "description"}
    if isinstance(document, list):
        return [_without_descriptions(v) for v in document]
    return document


def _tree_shape(run: RunLog) -> dict[str, Any]:
    """Internal names and statuses at every depth, in stored order."""

    def step(node: StepLog) -> dict[str, Any]:
        return {
            "status": node.status,
            "branches": {name: branch(b) for name, b in node.branches.items()},
        }

    def branch(node: BranchLog) -> dict[str, Any]:
        return {"status": node.status, "steps": {name: step(s) for name, s in node.steps.items()}}

    return {name: step(s) for name, s in run.steps.items()}


EXPECTED_TREE: dict[str, Any] = {
    "first": {"status": "SUCCESS", "branches": {}},
    "map": {
        "status": "SUCCESS",
        "branches": {
            "map.0": {
                "status": "SUCCESS",
                "steps": {
                    "map.0.work": {"status": "SUCCESS", "branches": {}},
                    "map.0.success": {"status": "SUCCESS", "branches": {}},
                    "map.0.par": {
                        "status": "CREATED",
                        "branches": {
                            "map.0.par.left": {
                                "status": "CREATED",
                                "steps": {
                                    "map.0.par.left.leaf": {"status": "CREATED", "branches": {}}
                                },
                            }
                        },
                    },
                },
            },
            **{
                f"map.{i}": {
                    "status": "SUCCESS",
                    "steps": {
                        f"map.{i}.work": {"status": "SUCCESS", "branches": {}},
                        f"map.{i}.success": {"status": "SUCCESS", "branches": {}},
                    },
                }
                for i in (1, 2)
            },
        },
    },
    "par": {
        "status": "CREATED",
        "branches": {
            "par.a": {
                "status": "CREATED",
                "steps": {
                    "par.a.inner": {
                        "status": "CREATED",
                        "branches": {
                            "par.a.inner.0": {
                                "status": "CREATED",
                                "steps": {
                                    "par.a.inner.0.leaf": {"status": "CREATED", "branches": {}}
                                },
                            }
                        },
                    }
                },
            },
            "par.b": {"status": "CREATED", "steps": {}},
        },
    },
}


def run_calls(store: BaseRunLogStore, run_id: str) -> dict[str, Callable[[], object]]:
    """Every call of the store API that names a run, on ``run_id``."""
    return {
        "get_run_log_by_id": lambda: store.get_run_log_by_id(run_id),
        "get_run_log_by_id(full)": lambda: store.get_run_log_by_id(run_id, full=True),
        "get_run_log_json": lambda: store.get_run_log_json(run_id),
        "update_run_log_status": lambda: store.update_run_log_status(run_id, "FAIL"),
        "set_parameters": lambda: store.set_parameters(run_id, {"a": _json(1)}),
        "set_parameters(branch)": lambda: store.set_parameters(run_id, {"a": _json(1)}, "s.0"),
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


def _outcomes(
    calls: dict[str, Callable[[], object]],
    expected: tuple[type[Exception], ...],
    run_id: str | None = None,
) -> dict[str, str]:
    """What each call did that it should not have: no error, another error, or the expected
    error naming another run than ``run_id``."""
    wrong = {}
    for name, call in calls.items():
        try:
            call()
        except expected as exc:
            named = getattr(exc, "run_id", None)
            if run_id is not None and named != run_id:
                wrong[name] = f"{type(exc).__name__} naming run {named!r}"
        except Exception as exc:
            wrong[name] = f"{type(exc).__name__}: {exc}"
        else:
            wrong[name] = "no error"
    return wrong


class _WriterProcess:
    """One ``runlog_store.testing._writer`` child, its acknowledgements read from its stdout."""

    def __init__(
        self, config: dict[str, Any], run_id: str, worker: str, start: int, count: int | None
    ) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115  # closed by close()
        # The child sees the modules the test sees (a plugin on a path pytest added, say).
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.process = subprocess.Popen(
            [sys.executable, "-m", _writer.__name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
        )
        job = {"store": config, "run_id": run_id, "worker": worker, "start": start, "count": count}
        assert self.process.stdin is not None and self.process.stdout is not None
        # The configuration (secrets included) goes through a pipe, never the command line.
        self.process.stdin.write(json.dumps(job).encode() + b"\n")
        self.process.stdin.flush()
        self._stdout = self.process.stdout.fileno()
        self._pending = b""
        self.acks: list[tuple[str, int]] = []

    def failure(self, what: str) -> str:
        self.stderr.seek(0)
        err = self.stderr.read().decode(errors="replace")[-4000:]
        return f"writer process {self.process.pid} {what}; its stderr:\n{err}"

    def _line(self, deadline: float) -> bytes | None:
        """The next whole line, None at end of output."""
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.process.kill()
                raise AssertionError(self.failure("stopped answering (timed out)"))
            ready, _, _ = select.select([self._stdout], [], [], remaining)
            if ready:
                chunk = os.read(self._stdout, 65536)
                if not chunk:
                    return None
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def wait_ready(self, timeout: float) -> None:
        line = self._line(time.monotonic() + timeout)
        if line != _writer.READY.strip():
            self.process.wait()
            raise AssertionError(self.failure(f"did not start (said {line!r})"))

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.close()

    def _ack(self, line: bytes) -> None:
        kind, index = line.decode().split()
        self.acks.append((kind, int(index)))

    def read_acks(self, count: int, timeout: float) -> None:
        """Wait until the writer acknowledged ``count`` writes in all."""
        deadline = time.monotonic() + timeout
        while len(self.acks) < count:
            line = self._line(deadline)
            if line is None:
                self.process.wait()
                raise AssertionError(self.failure(f"exited with {self.process.returncode}"))
            self._ack(line)

    def drain(self, timeout: float) -> None:
        """Read acknowledgements to the end of the output (a line cut short is not one)."""
        deadline = time.monotonic() + timeout
        while (line := self._line(deadline)) is not None:
            self._ack(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        self.stderr.close()


def _acknowledged(acks: list[tuple[str, int]]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {kind: set() for kind in _writer.KINDS}
    for kind, index in acks:
        found[kind].add(index)
    return found


class StoreContract:
    """What every run log store must do, as pytest tests; subclass it in a test module.

    **What it checks**: the API of runnable 0.50's stores (runs, steps, branches at any depth
    with maps and parallels nested in each other, parameters of every kind at root and branch
    scope, run config merges, statuses, job logs, reads full and not full, ``get_run_log_json``
    equal to the full model and accepted by runnable's own models when runnable is installed);
    the typed errors (``RunLogNotFoundError`` from every call on a missing run,
    ``StepLogNotFoundError``, ``BranchLogNotFoundError``, ``JobLogNotFoundError``,
    ``RunLogExistsError``; ``InvalidRunIdError`` for run ids no store may hold, with storage
    left as it was); listing, filters and deletes where offered; and, for stores that say
    ``supports_parallel_writes``, real writer processes: several at once lose no write, and a
    writer SIGKILLed at a random moment loses none it had acknowledged and leaves a run that
    reads and can be written.

    **Fixtures a subclass provides**

    - ``store_config`` (required unless ``store`` is overridden and
      ``shared_between_processes = False``): a dict ``{"type": <registered type name>,
      **config keys}`` from which ``runlog_store.create_store(type, **keys)`` builds a store
      over **fresh, empty storage** for each test (use ``tmp_path``, a new bucket, a new
      database file). Stores are rebuilt from it, never pickled: the multi-process tests start
      real child processes (``python -m runlog_store.testing._writer``) that receive this dict
      on a pipe and build their own store from it, so the type must be installed (an entry
      point in ``runlog_store.run_log_store``) and the config must reach the same storage from
      another process.
    - ``store`` (optional): the store under test; by default built from ``store_config``.
    - ``storage_listing`` (optional): a callable returning something comparable that lists
      everything in the store's storage (files under the folder, objects in the bucket); the
      invalid run id test checks it is unchanged. Default: no listing, the API is checked.

    **Class attributes a subclass may set**

    - ``shared_between_processes = False`` for a store that keeps runs in one process's memory:
      the tests that rebuild the store in other processes are not collected (no other process
      can see its runs, so they are not part of its contract).
    - ``lists_runs`` / ``deletes_runs``: whether ``list_run_ids`` (and ``get_run_logs``
      without ids) and ``delete_run`` are offered; ``None`` (the default) means "if the class
      overrides the method of ``BaseRunLogStore``".
    - ``writer_processes``, ``branches_per_writer``, ``kill_rounds``, ``process_timeout``: the
      size of the multi-process tests, which run only for stores that say
      ``supports_parallel_writes``.
    """

    shared_between_processes: ClassVar[bool] = True
    lists_runs: ClassVar[bool | None] = None
    deletes_runs: ClassVar[bool | None] = None
    writer_processes: ClassVar[int] = 4
    branches_per_writer: ClassVar[int] = 6
    kill_rounds: ClassVar[int] = 3
    process_timeout: ClassVar[float] = 120.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        drop_inapplicable(cls)

    # --- fixtures ---------------------------------------------------------------------------

    @pytest.fixture
    def store_config(self) -> dict[str, Any]:
        pytest.fail(
            f"{type(self).__name__} must define a store_config fixture returning "
            '{"type": <store type>, **config} over fresh storage (see StoreContract)'
        )

    @pytest.fixture
    def store(self, store_config: dict[str, Any]) -> BaseRunLogStore:
        return build_store(store_config)

    @pytest.fixture
    def storage_listing(self) -> StorageListing | None:
        return None

    # --- what the subclass declared ---------------------------------------------------------

    def _lists(self, store: BaseRunLogStore) -> bool:
        if self.lists_runs is not None:
            return self.lists_runs
        return type(store).list_run_ids is not BaseRunLogStore.list_run_ids

    def _deletes(self, store: BaseRunLogStore) -> bool:
        if self.deletes_runs is not None:
            return self.deletes_runs
        return type(store).delete_run is not BaseRunLogStore.delete_run

    def _needs_other_processes(self, store: BaseRunLogStore) -> None:
        if not self.shared_between_processes:
            pytest.skip(
                f"{type(store).__name__} keeps its runs inside one process "
                "(shared_between_processes = False): no other process can see them"
            )

    def _needs_parallel_writers(self, store: BaseRunLogStore) -> None:
        self._needs_other_processes(store)
        if not store.supports_parallel_writes:
            pytest.skip(
                f"{type(store).__name__} does not say supports_parallel_writes, so concurrent "
                "writer processes are not part of its contract"
            )

    # --- runs -------------------------------------------------------------------------------

    def test_create_and_read_back(self, store: BaseRunLogStore) -> None:
        created = store.create_run_log(RUN, dag_hash="d4g", tag="nightly")
        assert isinstance(created, RunLog)
        assert (created.run_id, created.dag_hash, created.tag) == (RUN, "d4g", "nightly")
        assert created.status == "CREATED"
        for full in (False, True):
            got = store.get_run_log_by_id(RUN, full=full)
            assert (got.run_id, got.dag_hash, got.tag, got.status) == (
                RUN,
                "d4g",
                "nightly",
                "CREATED",
            )
            assert (got.steps, got.parameters, got.run_config, got.job) == ({}, {}, {}, None)
        store.create_run_log("started", status="PROCESSING")
        assert store.get_run_log_by_id("started").status == "PROCESSING"

    def test_a_second_create_is_refused_and_changes_nothing(self, store: BaseRunLogStore) -> None:
        store.create_run_log(RUN, tag="first")
        store.set_parameters(RUN, {"a": _json(1)})
        with pytest.raises(RunLogExistsError) as raised:
            store.create_run_log(RUN, tag="second")
        assert raised.value.run_id == RUN
        kept = store.get_run_log_by_id(RUN, full=True)
        assert kept.tag == "first" and set(kept.parameters) == {"a"}

    def test_unusual_run_ids_round_trip(self, store: BaseRunLogStore) -> None:
        for i, run_id in enumerate(UNUSUAL_RUN_IDS):
            store.create_run_log(run_id, tag=str(i))
            store.add_step_log(store.create_step_log("s", "s"), run_id)
        for i, run_id in enumerate(UNUSUAL_RUN_IDS):
            run = store.get_run_log_by_id(run_id, full=True)
            assert (run.run_id, run.tag, list(run.steps)) == (run_id, str(i), ["s"])
        if self._lists(store):
            assert sorted(store.list_run_ids()) == sorted(UNUSUAL_RUN_IDS)

    def test_status_updates(self, store: BaseRunLogStore) -> None:
        store.create_run_log(RUN)
        for status in ("PROCESSING", "FAIL", "SUCCESS"):
            store.update_run_log_status(RUN, status)
            assert store.get_run_log_by_id(RUN).status == status
        assert store.get_run_log_by_id(RUN, full=True).status == "SUCCESS"

    def test_run_config_is_merged(self, store: BaseRunLogStore) -> None:
        store.create_run_log(RUN)
        store.set_run_config(RUN, {"executor": {"type": "local"}, "dag": {"a": 1}})
        store.set_run_config(RUN, {"dag": {"b": 2}, "tags": ["x"]})
        expected = {"executor": {"type": "local"}, "dag": {"b": 2}, "tags": ["x"]}
        assert store.get_run_config(RUN) == expected
        assert store.get_run_log_by_id(RUN, full=True).run_config == expected

    def test_put_run_log_stores_a_whole_tree(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        full = store.get_run_log_by_id(RUN, full=True)
        copy = full.model_copy(update={"run_id": "copy"}, deep=True)
        store.put_run_log(copy)
        got = store.get_run_log_by_id("copy", full=True)
        assert got.model_dump(mode="json", exclude={"run_id"}) == full.model_dump(
            mode="json", exclude={"run_id"}
        )
        assert _tree_shape(got) == EXPECTED_TREE
        # and put over a stored run stores its run-level fields as given
        changed = store.get_run_log_by_id("copy", full=True)
        changed.status, changed.tag = "FAIL", "retagged"
        store.put_run_log(changed)
        again = store.get_run_log_by_id("copy", full=True)
        assert (again.status, again.tag) == ("FAIL", "retagged")
        assert _tree_shape(again) == _tree_shape(changed)

    def test_branch_named_empty_is_the_run_itself(self, store: BaseRunLogStore) -> None:
        """runnable's convention: branch "" is the run itself, and adding a RunLog as a branch
        stores the run."""
        store.create_run_log(RUN, tag="t")
        run = store.get_branch_log("", RUN)
        assert isinstance(run, RunLog) and (run.run_id, run.tag) == (RUN, "t")
        run.status = "SUCCESS"
        store.add_branch_log(run, RUN)
        assert store.get_run_log_by_id(RUN).status == "SUCCESS"

    def test_unknown_fields_survive(self, store: BaseRunLogStore) -> None:
        """Fields of older layouts and of newer runnables are kept as they are."""
        run = RunLog(run_id=RUN, status="CREATED", future_field={"x": [1, 2]})
        run.steps["old"] = StepLog(name="old", internal_name="old", legacy="kept")
        store.put_run_log(run)
        step = StepLog(name="new", internal_name="new", shiny=True)
        step.attempts.append(StepAttempt(duration="0:00:01"))
        store.add_step_log(step, RUN)
        store.set_parameters(RUN, {"a": _json(1)})
        document = json.loads(store.get_run_log_json(RUN))
        assert document["future_field"] == {"x": [1, 2]}
        assert document["steps"]["old"]["legacy"] == "kept"
        assert document["steps"]["new"]["shiny"] is True
        assert document["steps"]["new"]["attempts"][0]["duration"] == "0:00:01"

    # --- the tree ---------------------------------------------------------------------------

    def test_full_read_has_every_step_and_branch(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        run = store.get_run_log_by_id(RUN, full=True)
        assert (run.status, run.tag, run.dag_hash) == ("SUCCESS", "nightly", "d4g")
        assert _tree_shape(run) == EXPECTED_TREE
        # stored order, at every depth
        assert list(run.steps) == ["first", "map", "par"]
        assert list(run.steps["map"].branches) == ["map.0", "map.1", "map.2"]
        assert list(run.find_branch("map.0").steps) == ["map.0.work", "map.0.success", "map.0.par"]
        assert run.steps["map"].step_type == "map" and run.steps["par"].step_type == "parallel"
        first = run.steps["first"]
        assert first.attempts[0].output_parameters["score"].value == 0.75
        assert first.attempts[0].code_identities[0].code_identifier == "abc123"
        assert first.attempts[0].duration == "0:00:01.500000"
        assert [(d.name, d.stage) for d in first.data_catalog] == [("data/x.csv", "put")]
        assert run.find_branch("map.2").parameters["item"].value == 2
        assert run.find_branch("par.a.inner.0").parameters["deep"].value == "yes"
        assert run.find_step("par.a.inner.0.leaf").name == "leaf"

    def test_read_that_is_not_full_has_the_run_fields(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        store.add_job_log(RUN, JobLog(status="SUCCESS"))
        full = store.get_run_log_by_id(RUN, full=True)
        short = store.get_run_log_by_id(RUN)
        assert short.model_dump(mode="json", include=RUN_FIELDS) == full.model_dump(
            mode="json", include=RUN_FIELDS
        )
        # A store may leave steps out of a read that is not full; those it gives are right.
        for name, step in short.steps.items():
            assert name in full.steps and step.status == full.steps[name].status

    def test_get_run_log_json_is_the_full_run_log(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        data = store.get_run_log_json(RUN)
        assert isinstance(data, bytes)
        full = store.get_run_log_by_id(RUN, full=True)
        assert json.loads(data) == json.loads(full.model_dump_json())
        assert RunLog.model_validate_json(data).model_dump() == full.model_dump()
        assert list(json.loads(data)["steps"]["map"]["branches"]) == ["map.0", "map.1", "map.2"]
        salvaged = store.salvage_run_log(RUN)
        assert salvaged.skipped == [] and salvaged.run_log.model_dump() == full.model_dump()

    def test_runnable_reads_the_json(self, store: BaseRunLogStore) -> None:
        datastore = pytest.importorskip(
            "runnable.datastore", reason="runnable is not installed: its models cannot be asked"
        )
        build_tree(store)
        theirs = datastore.RunLog.model_validate_json(store.get_run_log_json(RUN))
        assert theirs.search_step_by_internal_name("par.a.inner.0.leaf")[0].name == "leaf"
        ours = store.get_run_log_by_id(RUN, full=True)
        # runnable derives an object parameter's description from its run context
        assert _without_descriptions(json.loads(theirs.model_dump_json())) == (
            _without_descriptions(json.loads(ours.model_dump_json()))
        )

    # --- steps ------------------------------------------------------------------------------

    def test_steps_read_back_and_missing_ones_are_typed(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        first = store.get_step_log("first", RUN)
        assert first.status == "SUCCESS" and first.attempts[0].output_parameters["x"].value == 1
        assert store.get_step_log("map.1.work", RUN).status == "SUCCESS"
        assert store.get_step_log("par.a.inner.0.leaf", RUN).name == "leaf"
        for missing in ("nothing", "map.1.nothing", "par.a.inner.0.nope"):
            with pytest.raises(StepLogNotFoundError) as raised:
                store.get_step_log(missing, RUN)
            assert raised.value.step_name == missing and raised.value.run_id == RUN

    def test_rewriting_a_step_keeps_its_place_and_its_branches(
        self, store: BaseRunLogStore
    ) -> None:
        build_tree(store)
        fresh = store.get_step_log("first", RUN)
        fresh.message = "rewritten"
        store.add_step_log(fresh, RUN)
        rebuilt = store.create_step_log("map", "map")  # from scratch, without its branches
        rebuilt.status = "FAIL"
        store.add_step_log(rebuilt, RUN)
        run = store.get_run_log_by_id(RUN, full=True)
        assert list(run.steps) == ["first", "map", "par"]
        assert run.steps["first"].message == "rewritten"
        assert run.steps["map"].status == "FAIL"
        assert list(run.steps["map"].branches) == ["map.0", "map.1", "map.2"]
        assert list(run.find_branch("map.0").steps) == ["map.0.work", "map.0.success", "map.0.par"]

    def test_a_step_handed_in_with_its_branches_is_stored_whole(
        self, store: BaseRunLogStore
    ) -> None:
        store.create_run_log(RUN)
        step = store.create_step_log("par", "par")
        step.step_type = "parallel"
        branch = BranchLog(internal_name="par.a", status="SUCCESS")
        branch.steps["par.a.inner"] = store.create_step_log("inner", "par.a.inner")
        step.branches["par.a"] = branch
        store.add_step_log(step, RUN)
        run = store.get_run_log_by_id(RUN, full=True)
        assert run.find_step("par.a.inner").name == "inner"
        assert run.find_branch("par.a").status == "SUCCESS"

    def test_dots_in_step_names_and_map_values(self, store: BaseRunLogStore) -> None:
        store.create_run_log(RUN)
        store.add_step_log(store.create_step_log("v1.2", "v1.2"), RUN)
        store.add_step_log(store.create_step_log("map", "map"), RUN)
        store.add_branch_log(store.create_branch_log("map.0.5"), RUN)
        store.add_step_log(store.create_step_log("fit.model", "map.0.5.fit.model"), RUN)
        run = store.get_run_log_by_id(RUN, full=True)
        assert list(run.steps) == ["v1.2", "map"]
        assert list(run.steps["map"].branches) == ["map.0.5"]
        assert store.get_step_log("map.0.5.fit.model", RUN).name == "fit.model"
        assert store.get_step_log("v1.2", RUN).name == "v1.2"

    # --- branches ---------------------------------------------------------------------------

    def test_branches_read_back_and_missing_ones_are_typed(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        branch = store.get_branch_log("map.2", RUN)
        assert isinstance(branch, BranchLog)
        assert (branch.internal_name, branch.status) == ("map.2", "SUCCESS")
        assert branch.parameters["item"].value == 2
        nested = store.get_branch_log("par.a.inner.0", RUN)
        assert isinstance(nested, BranchLog) and nested.parameters["deep"].value == "yes"
        for missing in ("map.99", "par.c", "nostep.0", "par.a.inner.7"):
            with pytest.raises(BranchLogNotFoundError) as raised:
                store.get_branch_log(missing, RUN)
            assert raised.value.branch_name == missing and raised.value.run_id == RUN

    def test_storing_a_branch_again_keeps_its_steps(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        again = store.create_branch_log("map.1")  # from scratch, without its steps
        again.status = "FAIL"
        store.add_branch_log(again, RUN)
        run = store.get_run_log_by_id(RUN, full=True)
        assert run.find_branch("map.1").status == "FAIL"
        assert list(run.find_branch("map.1").steps) == ["map.1.work", "map.1.success"]

    # --- parameters -------------------------------------------------------------------------

    def test_parameters_of_every_kind_at_root_and_branch_scope(
        self, store: BaseRunLogStore
    ) -> None:
        store.create_run_log(RUN)
        store.set_parameters(RUN, {"a": _json(1), "m": MetricParameter(kind="metric", value=0.5)})
        store.set_parameters(RUN, {"b": ObjectParameter(kind="object", value="model")})
        store.set_parameters(RUN, {"a": _json({"nested": [1, "two", None]})})
        params = store.get_parameters(RUN)
        assert {k: (v.kind, v.value) for k, v in params.items()} == {
            "a": ("json", {"nested": [1, "two", None]}),
            "m": ("metric", 0.5),
            "b": ("object", "model"),
        }
        assert params["b"].description == "Pickled object stored in catalog as: model"
        assert store.get_run_log_by_id(RUN, full=True).parameters == params

        store.add_step_log(store.create_step_log("map", "map"), RUN)
        store.add_branch_log(store.create_branch_log("map.x", parameters={"x": _json(1)}), RUN)
        store.set_parameters(RUN, {"y": MetricParameter(kind="metric", value=2)}, "map.x")
        store.set_parameters(RUN, {"x": _json(3)}, internal_branch_name="map.x")
        scoped = store.get_parameters(RUN, internal_branch_name="map.x")
        assert {k: (v.kind, v.value) for k, v in scoped.items()} == {
            "x": ("json", 3),
            "y": ("metric", 2),
        }
        assert set(store.get_parameters(RUN)) == {"a", "m", "b"}, "branch scope leaked to root"
        with pytest.raises(BranchLogNotFoundError):
            store.set_parameters(RUN, {"z": _json(0)}, internal_branch_name="map.nope")
        with pytest.raises(BranchLogNotFoundError):
            store.get_parameters(RUN, internal_branch_name="map.nope")

    # --- jobs -------------------------------------------------------------------------------

    def test_job_log(self, store: BaseRunLogStore) -> None:
        store.create_run_log(RUN)
        with pytest.raises(JobLogNotFoundError) as raised:
            store.get_job_log(RUN)
        assert raised.value.run_id == RUN
        job = store.create_job_log()
        assert isinstance(job, JobLog) and job.status == "CREATED"
        job.status = "SUCCESS"
        job.attempts.append(_attempt())
        job.add_data_catalogs([DataCatalog(name="out.csv", data_hash="h", stage="put")])
        store.add_job_log(RUN, job)
        got = store.get_job_log(RUN)
        assert got.status == "SUCCESS" and got.data_catalog[0].name == "out.csv"
        assert got.attempts[0].output_parameters["x"].value == 1
        assert store.get_run_log_by_id(RUN).status == "SUCCESS", "the job's status is the run's"
        full = store.get_run_log_by_id(RUN, full=True)
        assert full.job is not None and full.job.status == "SUCCESS"

    def test_factories(self, store: BaseRunLogStore) -> None:
        assert store.create_code_identity().code_identifier == ""
        assert store.create_data_catalog("data/x.csv").name == "data/x.csv"
        step = store.create_step_log("s", "a.b.s")
        assert (step.name, step.internal_name, step.status) == ("s", "a.b.s", "CREATED")
        branch = store.create_branch_log("a.b", parameters={"p": _json(1)})
        assert (branch.internal_name, branch.status, list(branch.parameters)) == (
            "a.b",
            "CREATED",
            ["p"],
        )

    def test_summary_is_plain_and_shows_no_secret(self, store: BaseRunLogStore) -> None:
        check_summary(store)

    # --- errors -----------------------------------------------------------------------------

    def test_every_call_on_a_missing_run_is_run_log_not_found(self, store: BaseRunLogStore) -> None:
        missing = "never-created"
        wrong = _outcomes(run_calls(store, missing), (RunLogNotFoundError,), missing)
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
            for name, outcome in _outcomes(creates, (InvalidRunIdError,)).items():
                wrong[f"{name}({bad!r})"] = outcome
            allowed = (InvalidRunIdError, RunLogNotFoundError)
            for name, outcome in _outcomes(run_calls(store, bad), allowed).items():
                wrong[f"{name}({bad!r})"] = outcome
        assert wrong == {}
        if storage_listing is not None:
            assert storage_listing() == before, "a refused run id changed the storage"
        assert store.get_run_log_by_id("kept", full=True).tag == "k"
        if self._lists(store):
            assert store.list_run_ids() == ["kept"]

    # --- many runs --------------------------------------------------------------------------

    def test_listing_and_filters(self, store: BaseRunLogStore) -> None:
        if not self._lists(store):
            pytest.skip(f"{type(store).__name__} cannot list its runs (lists_runs is false)")
        assert store.list_run_ids() == [] and store.get_run_logs() == []
        store.create_run_log("a", tag="x")
        store.create_run_log("b", tag="y")
        store.create_run_log("c", tag="x")
        store.update_run_log_status("c", "SUCCESS")
        assert sorted(store.list_run_ids()) == ["a", "b", "c"]
        assert sorted(r.run_id for r in store.get_run_logs()) == ["a", "b", "c"]
        assert sorted(r.run_id for r in store.get_run_logs(tag="x")) == ["a", "c"]
        assert [r.run_id for r in store.get_run_logs(tag="x", status="SUCCESS")] == ["c"]
        assert [r.run_id for r in store.get_run_logs(status="CREATED", tag="y")] == ["b"]
        assert len(store.get_run_logs(limit=2)) == 2
        assert store.get_run_logs(limit=0) == []
        assert [r.run_id for r in store.get_run_logs(run_ids=["b", "a"])] == ["b", "a"]
        with pytest.raises(ValueError, match="-1"):
            store.get_run_logs(limit=-1)

    def test_delete_run(self, store: BaseRunLogStore) -> None:
        if not self._deletes(store):
            pytest.skip(f"{type(store).__name__} cannot delete runs (deletes_runs is false)")
        build_tree(store)
        store.create_run_log("other", tag="o")
        store.delete_run(RUN)
        with pytest.raises(RunLogNotFoundError):
            store.get_run_log_by_id(RUN, full=True)
        with pytest.raises(RunLogNotFoundError):
            store.get_run_log_json(RUN)
        with pytest.raises(RunLogNotFoundError):
            store.delete_run(RUN)
        assert store.get_run_log_by_id("other").tag == "o"
        if self._lists(store):
            assert store.list_run_ids() == ["other"]
        # the id is free again, and nothing of the deleted run comes back with it
        store.create_run_log(RUN)
        assert store.get_run_log_by_id(RUN, full=True).steps == {}

    # --- other processes --------------------------------------------------------------------

    @needs("shared_between_processes")
    def test_a_store_rebuilt_from_its_config_sees_the_same_runs(
        self, store: BaseRunLogStore, store_config: dict[str, Any]
    ) -> None:
        self._needs_other_processes(store)
        store.create_run_log(RUN, tag="t")
        other = build_store(store_config)
        assert type(other) is type(store)
        assert other.get_run_log_by_id(RUN).tag == "t"
        other.set_parameters(RUN, {"x": _json(1)})
        assert store.get_parameters(RUN)["x"].value == 1

    def _start_writers(
        self, config: dict[str, Any], workers: list[str], start: int, count: int | None
    ) -> list[_WriterProcess]:
        writers = []
        try:
            for worker in workers:
                writers.append(_WriterProcess(config, RUN, worker, start, count))
            for writer in writers:
                writer.wait_ready(self.process_timeout)
        except BaseException:
            for writer in writers:
                writer.close()
            raise
        return writers

    @staticmethod
    def _prepare_run(store: BaseRunLogStore) -> None:
        store.create_run_log(RUN)
        store.set_parameters(RUN, {"seed": _json(0)})
        mapped = store.create_step_log("map", "map")
        mapped.step_type = "map"
        store.add_step_log(mapped, RUN)

    @staticmethod
    def _missing_writes(
        store: BaseRunLogStore, worker: str, acknowledged: dict[str, set[int]]
    ) -> list[str]:
        """Acknowledged writes of ``worker`` (see ``_writer``) the run does not hold."""
        run = store.get_run_log_by_id(RUN, full=True)
        branches = run.steps["map"].branches
        missing = []
        for i in sorted(acknowledged["B"]):
            if _writer.branch_name(worker, i) not in branches:
                missing.append(f"branch {_writer.branch_name(worker, i)}")
        for i in sorted(acknowledged["Q"]):
            branch = branches.get(_writer.branch_name(worker, i))
            got = {k: v.value for k, v in branch.parameters.items()} if branch else None
            if got != {"item": i, "worker": worker}:
                missing.append(f"parameters of {_writer.branch_name(worker, i)} (got {got})")
        for i in sorted(acknowledged["S"]):
            name = _writer.branch_name(worker, i)
            step = branches[name].steps.get(f"{name}.work") if name in branches else None
            if step is None or step.status != "SUCCESS":
                missing.append(f"step {name}.work SUCCESS")
        for i in sorted(acknowledged["P"]):
            param = run.parameters.get(_writer.root_parameter(worker, i))
            if param is None or param.value != i:
                missing.append(f"root parameter {_writer.root_parameter(worker, i)}")
        for i in sorted(acknowledged["C"]):
            branch = branches.get(_writer.branch_name(worker, i))
            if branch is None or branch.status != "SUCCESS":
                missing.append(f"status SUCCESS of {_writer.branch_name(worker, i)}")
        return missing

    @needs("shared_between_processes")
    def test_parallel_writer_processes_lose_nothing(
        self, store: BaseRunLogStore, store_config: dict[str, Any]
    ) -> None:
        """``writer_processes`` processes write ``branches_per_writer`` branches each (steps,
        branch and root parameters, statuses) into one run at once; every write is there."""
        self._needs_parallel_writers(store)
        self._prepare_run(store)
        workers = [f"w{n}" for n in range(self.writer_processes)]
        count = self.branches_per_writer
        writers = self._start_writers(store_config, workers, 0, count)
        try:
            for writer in writers:
                writer.go()  # all at once: they were all ready
            for writer in writers:
                writer.drain(self.process_timeout)
                writer.process.wait(self.process_timeout)
                assert writer.process.returncode == 0, writer.failure(
                    f"failed (exit {writer.process.returncode})"
                )
                assert len(writer.acks) == count * len(_writer.KINDS)
        finally:
            for writer in writers:
                writer.close()
        everything = {kind: set(range(count)) for kind in _writer.KINDS}
        missing = [m for w in workers for m in self._missing_writes(store, w, everything)]
        assert missing == [], f"{len(missing)} writes lost"
        run = store.get_run_log_by_id(RUN, full=True)
        assert len(run.steps["map"].branches) == count * len(workers)
        assert set(run.parameters) == {"seed"} | {
            _writer.root_parameter(w, i) for w in workers for i in range(count)
        }
        assert run.status.startswith("AT-"), run.status  # the last writer's, whichever it was
        assert json.loads(store.get_run_log_json(RUN)) == json.loads(run.model_dump_json())

    @needs("shared_between_processes")
    def test_sigkilled_writer_loses_no_acknowledged_write(
        self, store: BaseRunLogStore, store_config: dict[str, Any]
    ) -> None:
        """A writer process is SIGKILLed at a random moment, ``kill_rounds`` times on one run;
        after each kill the run reads in full and holds every write the writer acknowledged,
        and it can still be written."""
        self._needs_parallel_writers(store)
        self._prepare_run(store)
        rng = random.Random(f"{type(self).__qualname__}:sigkill")
        acknowledged: dict[str, set[int]] = {kind: set() for kind in _writer.KINDS}
        start = 0
        for kill in range(self.kill_rounds):
            (writer,) = self._start_writers(store_config, ["k"], start, None)
            try:
                writer.go()
                writer.read_acks(rng.randint(1, 4 * len(_writer.KINDS)), self.process_timeout)
                time.sleep(rng.uniform(0, 0.004))  # land anywhere in the next write
                writer.process.send_signal(signal.SIGKILL)
                writer.process.wait(self.process_timeout)
                assert writer.process.returncode == -signal.SIGKILL, writer.failure(
                    f"ended by itself (exit {writer.process.returncode}) before kill {kill}"
                )
                writer.drain(self.process_timeout)
            finally:
                writer.close()
            for kind, found in _acknowledged(writer.acks).items():
                acknowledged[kind] |= found
            start = max(i for _, i in writer.acks) + 2  # the index it was on is not reused
            missing = self._missing_writes(store, "k", acknowledged)
            assert missing == [], f"after kill {kill}: acknowledged writes lost"
            status = store.get_run_log_by_id(RUN).status
            if acknowledged["R"]:
                assert status.startswith("AT-") and int(status[3:]) >= max(acknowledged["R"])
            full = store.get_run_log_by_id(RUN, full=True)
            assert json.loads(store.get_run_log_json(RUN)) == json.loads(full.model_dump_json())
        store.update_run_log_status(RUN, "SUCCESS")
        rebuilt = build_store(store_config)
        assert json.loads(rebuilt.get_run_log_json(RUN))["status"] == "SUCCESS"
        rebuilt.add_step_log(rebuilt.create_step_log("after", "after"), RUN)
        assert "after" in store.get_run_log_by_id(RUN, full=True).steps


__all__ = ["BAD_RUN_IDS", "StoreContract", "build_store", "build_tree", "check_summary"]
