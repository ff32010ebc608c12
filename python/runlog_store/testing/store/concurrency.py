"""Other processes: a store rebuilt from its config, writer processes at once, a writer
SIGKILLed at a random moment."""

from __future__ import annotations

import json
import random
import signal
import time
from typing import Any

from runlog_store import BaseRunLogStore
from runlog_store.testing import _writer
from runlog_store.testing._checks import needs
from runlog_store.testing.store.processes import (
    acknowledged_writes,
    missing_writes,
    prepare_run,
    start_writers,
)
from runlog_store.testing.store.suite import RUN, StoreSuite, build_store
from runlog_store.testing.store.tree import json_param


class ConcurrencyTests(StoreSuite):
    """Runs are shared between processes; for stores that say ``supports_parallel_writes``,
    real writer processes lose no write, not even when SIGKILLed."""

    @needs("shared_between_processes")
    def test_a_store_rebuilt_from_its_config_sees_the_same_runs(
        self, store: BaseRunLogStore, store_config: dict[str, Any]
    ) -> None:
        store.create_run_log(RUN, tag="t")
        other = build_store(store_config)
        assert type(other) is type(store)
        assert other.get_run_log_by_id(RUN).tag == "t"
        other.set_parameters(RUN, {"x": json_param(1)})
        assert store.get_parameters(RUN)["x"].value == 1

    @needs("shared_between_processes")
    def test_parallel_writer_processes_lose_nothing(
        self, store: BaseRunLogStore, store_config: dict[str, Any]
    ) -> None:
        """``writer_processes`` processes write ``branches_per_writer`` branches each (steps,
        branch and root parameters, statuses) into one run at once; every write is there."""
        self._needs_parallel_writers(store)
        prepare_run(store, RUN)
        workers = [f"w{n}" for n in range(self.writer_processes)]
        count = self.branches_per_writer
        writers = start_writers(store_config, RUN, workers, 0, count, self.process_timeout)
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
        missing = [m for w in workers for m in missing_writes(store, RUN, w, everything)]
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
        prepare_run(store, RUN)
        rng = random.Random(f"{type(self).__qualname__}:sigkill")
        acknowledged: dict[str, set[int]] = {kind: set() for kind in _writer.KINDS}
        start = 0
        for kill in range(self.kill_rounds):
            (writer,) = start_writers(store_config, RUN, ["k"], start, None, self.process_timeout)
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
            for kind, found in acknowledged_writes(writer.acks).items():
                acknowledged[kind] |= found
            start = max(i for _, i in writer.acks) + 2  # the index it was on is not reused
            missing = missing_writes(store, RUN, "k", acknowledged)
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


__all__ = ["ConcurrencyTests"]
