"""The harness of the multi-process tests: writer processes (``runlog_store.testing._writer``)
started, released at once, read and killed, and the check of what they acknowledged.

A writer receives the store's config on a pipe and builds its own store from it, writes branch
after branch under the run's ``map`` step and acknowledges each write on its stdout once the
call has returned; what it acknowledged must be in the run, even after a SIGKILL.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from typing import Any

from runlog_store import BaseRunLogStore, JsonParameter
from runlog_store.testing import _writer


class WriterProcess:
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


def acknowledged_writes(acks: list[tuple[str, int]]) -> dict[str, set[int]]:
    """A writer's acknowledgements as the indexes of each kind of write."""
    found: dict[str, set[int]] = {kind: set() for kind in _writer.KINDS}
    for kind, index in acks:
        found[kind].add(index)
    return found


def start_writers(
    config: dict[str, Any],
    run_id: str,
    workers: list[str],
    start: int,
    count: int | None,
    timeout: float,
) -> list[WriterProcess]:
    """One writer per name in ``workers``, each ready (its store built) and waiting for ``go``."""
    writers = []
    try:
        for worker in workers:
            writers.append(WriterProcess(config, run_id, worker, start, count))
        for writer in writers:
            writer.wait_ready(timeout)
    except BaseException:
        for writer in writers:
            writer.close()
        raise
    return writers


def prepare_run(store: BaseRunLogStore, run_id: str) -> None:
    """The run the writers write into: a root parameter and the ``map`` step."""
    store.create_run_log(run_id)
    store.set_parameters(run_id, {"seed": JsonParameter(kind="json", value=0)})
    mapped = store.create_step_log("map", "map")
    mapped.step_type = "map"
    store.add_step_log(mapped, run_id)


def missing_writes(
    store: BaseRunLogStore, run_id: str, worker: str, acknowledged: dict[str, set[int]]
) -> list[str]:
    """Acknowledged writes of ``worker`` (see ``_writer``) the run does not hold."""
    run = store.get_run_log_by_id(run_id, full=True)
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


__all__ = [
    "WriterProcess",
    "acknowledged_writes",
    "missing_writes",
    "prepare_run",
    "start_writers",
]
