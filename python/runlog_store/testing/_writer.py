"""The child process of the multi-process contract tests: a writer of one run.

Run as ``python -m runlog_store.testing._writer``. It reads one JSON line on stdin::

    {"store": {"type": ..., **config}, "run_id": ..., "worker": "w0", "start": 0, "count": 8}

rebuilds the store with ``runlog_store.create_store`` (the child shares no object with the
test), prints ``ready``, waits for any line on stdin (so every writer starts at once), then
writes branch after branch under the run's ``map`` step. After each call returns it prints an
acknowledgement ``<kind> <index>``: what was acknowledged is what must survive, even if the
process is SIGKILLed right after. ``count`` null writes until killed.

Per index ``i`` (branch ``map.<worker>-<i>``), in order, one acknowledgement each:

- ``B`` the branch is added;
- ``Q`` branch parameters ``item`` (= i) and ``worker`` are set;
- ``S`` step ``<branch>.work`` is added, then stored again with status SUCCESS;
- ``P`` root parameter ``<worker>-<i>`` (= i) is set;
- ``C`` the branch, read back, is stored again with status SUCCESS;
- ``R`` the run's status is set to ``AT-<i>``.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from typing import Any

from runlog_store import BranchLog, JsonParameter, MetricParameter, create_store

READY = b"ready\n"
KINDS = "BQSPCR"


def branch_name(worker: str, index: int) -> str:
    return f"map.{worker}-{index}"


def root_parameter(worker: str, index: int) -> str:
    return f"{worker}-{index}"


def write(job: dict[str, Any]) -> None:
    config = dict(job["store"])
    store = create_store(config.pop("type"), **config)
    run_id: str = job["run_id"]
    worker: str = job["worker"]
    os.write(1, READY)
    sys.stdin.readline()  # the go signal

    def ack(kind: str, index: int) -> None:
        os.write(1, f"{kind} {index}\n".encode())

    count = job.get("count")
    indexes = itertools.count(job["start"]) if count is None else range(job["start"], count)
    for i in indexes:
        name = branch_name(worker, i)
        store.add_branch_log(store.create_branch_log(name), run_id)
        ack("B", i)
        store.set_parameters(
            run_id,
            {
                "item": JsonParameter(kind="json", value=i),
                "worker": JsonParameter(kind="json", value=worker),
            },
            internal_branch_name=name,
        )
        ack("Q", i)
        step = store.create_step_log("work", f"{name}.work")
        store.add_step_log(step, run_id)
        step.status = "SUCCESS"
        store.add_step_log(step, run_id)
        ack("S", i)
        store.set_parameters(
            run_id, {root_parameter(worker, i): MetricParameter(kind="metric", value=i)}
        )
        ack("P", i)
        branch = store.get_branch_log(name, run_id)
        if not isinstance(branch, BranchLog):
            raise TypeError(f"get_branch_log({name!r}) returned {type(branch).__name__}")
        branch.status = "SUCCESS"
        store.add_branch_log(branch, run_id)
        ack("C", i)
        store.update_run_log_status(run_id, f"AT-{i}")
        ack("R", i)


def main() -> None:
    write(json.loads(sys.stdin.readline()))


if __name__ == "__main__":
    main()
