"""A run's status, and the job log whose status is the run's."""

from __future__ import annotations

import pytest

from runlog_store import BaseRunLogStore, DataCatalog, JobLog
from runlog_store.exceptions import JobLogNotFoundError
from runlog_store.testing.store.suite import RUN, StoreSuite
from runlog_store.testing.store.tree import sample_attempt


class StatusTests(StoreSuite):
    """Status updates read back; a job log is stored, read and sets the run's status."""

    def test_status_updates(self, store: BaseRunLogStore) -> None:
        store.create_run_log(RUN)
        for status in ("PROCESSING", "FAIL", "SUCCESS"):
            store.update_run_log_status(RUN, status)
            assert store.get_run_log_by_id(RUN).status == status
        assert store.get_run_log_by_id(RUN, full=True).status == "SUCCESS"

    def test_job_log(self, store: BaseRunLogStore) -> None:
        store.create_run_log(RUN)
        with pytest.raises(JobLogNotFoundError) as raised:
            store.get_job_log(RUN)
        assert raised.value.run_id == RUN
        job = store.create_job_log()
        assert isinstance(job, JobLog) and job.status == "CREATED"
        job.status = "SUCCESS"
        job.attempts.append(sample_attempt())
        job.add_data_catalogs([DataCatalog(name="out.csv", data_hash="h", stage="put")])
        store.add_job_log(RUN, job)
        got = store.get_job_log(RUN)
        assert got.status == "SUCCESS" and got.data_catalog[0].name == "out.csv"
        assert got.attempts[0].output_parameters["x"].value == 1
        assert store.get_run_log_by_id(RUN).status == "SUCCESS", "the job's status is the run's"
        full = store.get_run_log_by_id(RUN, full=True)
        assert full.job is not None and full.job.status == "SUCCESS"


__all__ = ["StatusTests"]
