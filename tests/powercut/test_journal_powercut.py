"""Power cuts under a chunked-fs writer that ends its runs: the fold of a run's end removes the
journals, so it must leave every record durable in runnable's documents first.

The writer of test_powercut.py never ends a run; this one starts a run, ends three branches in
it (each folded into its BranchLog) and ends the run (everything folded, the journal removed),
then starts the next. After each cut, every acknowledged write must be in the run as we read
it, and for every run whose end was acknowledged, runnable 0.50's own chunked store (which reads
the documents only) must read the same run as we do.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore as RunnableChunkedFs

from runlog_store import create_store

from .harness import CUTS, SEED, Ack, Tally, Workload, cut_under_writer, mounted, require_fuse

BRANCHES = 3


@pytest.fixture(scope="module", autouse=True)
def _fuse() -> None:
    require_fuse()


def _store(log_folder: str) -> Any:
    return create_store("chunked-fs", log_folder=log_folder, fsync=True)


def ending_workload(log_folder: str, first_run: int) -> Workload:
    """Runs of a map step with BRANCHES branches of one step, each ended, then the run ended;
    acknowledged as ``S run i`` (a step), ``C run i`` (a branch ended), ``E run`` (the run
    ended)."""

    def work(ack: Ack) -> None:
        store = _store(log_folder)
        n = first_run
        while True:
            run_id = f"run-{n}"
            store.create_run_log(run_id)
            store.add_step_log(store.create_step_log("map", "map"), run_id)
            for i in range(BRANCHES):
                name = f"map.{i}"
                branch = store.create_branch_log(name)
                store.add_branch_log(branch, run_id)
                step = store.create_step_log("s", f"{name}.s")
                step.status = "SUCCESS"
                store.add_step_log(step, run_id)
                ack(f"S {run_id} {i}")
                branch.status = "SUCCESS"
                store.add_branch_log(branch, run_id)
                ack(f"C {run_id} {i}")
            store.update_run_log_status(run_id, "SUCCESS")
            ack(f"E {run_id}")
            n += 1

    return work


@dataclass
class Acknowledged:
    steps: dict[str, set[int]] = field(default_factory=dict)
    branches: dict[str, set[int]] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    counted: set[str] = field(default_factory=set)
    next_run: int = 0

    def take(self, acks: list[str]) -> int:
        for line in acks:
            kind, run_id, *rest = line.split()
            self.next_run = max(self.next_run, int(run_id.split("-")[1]) + 1)
            if kind == "S":
                self.steps.setdefault(run_id, set()).add(int(rest[0]))
            elif kind == "C":
                self.branches.setdefault(run_id, set()).add(int(rest[0]))
            else:
                self.ended.add(run_id)
        return len(acks)

    def runs(self) -> set[str]:
        return set(self.steps) | set(self.branches) | self.ended


def _lost(log_folder: str, seen: Acknowledged) -> tuple[int, list[str]]:
    lost, problems = 0, []
    for run_id in sorted(seen.runs()):
        try:
            document = json.loads(_store(log_folder).get_run_log_json(run_id))
        except Exception as exc:
            problems.append(f"{run_id} does not read: {type(exc).__name__}: {exc}")
            lost += 1
            continue
        branches = document["steps"].get("map", {}).get("branches", {})
        found = [
            f"step {i}"
            for i in seen.steps.get(run_id, set())
            if branches.get(f"map.{i}", {}).get("steps", {}).get(f"map.{i}.s", {}).get("status")
            != "SUCCESS"
        ]
        found += [
            f"end of branch {i}"
            for i in seen.branches.get(run_id, set())
            if branches.get(f"map.{i}", {}).get("status") != "SUCCESS"
        ]
        if run_id in seen.ended:
            if document["status"] != "SUCCESS":
                found.append("its end")
            theirs = RunnableChunkedFs(log_folder=log_folder).get_run_log_by_id(run_id, full=True)
            if json.loads(theirs.model_dump_json()) != document:
                found.append("runnable's reading of the ended run")
        new = [
            f"{run_id}: acknowledged {what} is gone"
            for what in found
            if run_id + what not in seen.counted
        ]
        seen.counted.update(run_id + what for what in found)
        lost += len(new)
        problems += new
    return lost, problems


@pytest.mark.slow
def test_the_end_of_a_run_keeps_everything_in_runnables_documents(tmp_path: Path) -> None:
    tally = Tally("chunked-fs, runs ended under power cuts")
    rng = random.Random(f"{SEED}-journal-ends")
    seen = Acknowledged()
    with mounted(tmp_path) as mount:
        log_folder = str(mount.mnt / "logs")
        for n in range(CUTS):
            # Every fourth cut comes after the writer ended a run, so some ended run is checked
            # however slow the machine is; the others land anywhere, its first run's end too.
            run_ended = ("E ", 1) if n % 4 == 0 else None
            workload = ending_workload(log_folder, seen.next_run)
            cut = cut_under_writer(mount, workload, rng, after_acks=run_ended)
            assert not cut.errors_before_cut, f"{cut.errors_before_cut}\n{mount.log_tail()}"
            acknowledged = seen.take(cut.acks)
            seen.next_run += 1  # a run the writer was on when cut is not reused
            lost, problems = _lost(log_folder, seen)
            tally.record(acknowledged, lost, problems)
    tally.report()
    print(f"  {len(seen.ended)} runs ended and read by runnable after a cut")
    assert seen.ended, "no run ended between cuts: nothing was checked"
    assert tally.lost == 0, f"{tally.summary()}: {tally.problems}"
