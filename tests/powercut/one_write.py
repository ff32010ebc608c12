"""One write of each kind, for strace (test_fsync_sequence.py): run as
``python one_write.py KIND FOLDER [nofsync]`` with KIND ``file-system``, ``chunked-fs`` or
``catalog`` (``nofsync``: configured with ``fsync: false``, to show that the test notices).

Before each write it opens ``/powercut-mark-<name>`` (which does not exist): the open shows in
the trace and cuts it into one part per write.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from runlog_store import create_catalog, create_store


def mark(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.close(os.open(f"/powercut-mark-{name}", os.O_RDONLY))


def main(kind: str, folder: Path, fsync: bool) -> None:
    if kind == "catalog":
        compute = folder / "compute"
        compute.mkdir()
        (compute / "data.bin").write_bytes(b"x" * 5000)
        catalog = create_catalog(
            "file-system",
            catalog_location=str(folder / "catalog"),
            compute_data_folder=str(compute),
            fsync=fsync,
        )
        mark("put")
        catalog.put("data.bin", run_id="r")
        mark("new-source")
        (compute / "data.bin").write_bytes(b"y" * 5000)
        mark("put-again")
        catalog.put("data.bin", run_id="r")
        mark("many-sources")
        for n in range(12):
            where = compute / "many" / "abc"[n % 3] / f"{n}.bin"
            where.parent.mkdir(parents=True, exist_ok=True)
            where.write_bytes(bytes([n]) * 3000)
        mark("put-many")
        catalog.put("many/*/*.bin", run_id="r")
    else:
        store = create_store(kind, log_folder=str(folder / "logs"), fsync=fsync)
        mark("create")
        store.create_run_log("r")
        step = store.create_step_log("s", "s")
        mark("step")
        store.add_step_log(step, "r")
        branch = store.create_branch_log("s.b")
        store.add_branch_log(branch, "r")
        branch.status = "SUCCESS"
        mark("branch-end")
        store.add_branch_log(branch, "r")
        mark("status")
        store.update_run_log_status("r", "SUCCESS")
    mark("end")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), fsync=sys.argv[3:] != ["nofsync"])
