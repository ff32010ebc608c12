"""Files of 1 GiB or more: runnable 0.50 records a fingerprint, not a content hash.

runnable's ``get_data_hash`` hashes every byte of a file under 1 GiB (SHA-256), but for a file
of 1 GiB or more only SHA-256(size as decimal text + first MiB + last MiB). runlog-store's
catalog with ``hash_algorithm: sha256`` records the SHA-256 of every byte whatever the size:
the same digest as runnable's below 1 GiB, a different one above. ``runlog verify`` checks
every byte of ours; an entry runnable recorded for such a file it reports as
``fingerprint-only`` (its content cannot be checked), which is not a failure.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from runnable.utils import get_data_hash

from runlog_store import hash_file, load_store

from .harness import Project, succeeded

SIZE = (1 << 30) + (1 << 20)  # just over runnable's limit


def _sparse_file(path: Path) -> None:
    """Mostly a hole (cheap to write), data at both ends and in the middle."""
    with open(path, "wb") as handle:
        handle.truncate(SIZE)
        for offset, data in ((0, b"head"), (SIZE // 2, b"middle"), (SIZE - 4, b"tail")):
            handle.seek(offset)
            handle.write(data)


def _fingerprint(path: Path) -> str:
    """runnable 0.50's rule, written out: SHA-256 of the size, the first and the last MiB."""
    digest = hashlib.sha256(str(SIZE).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(-(1 << 20), 2)
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def test_over_1_gib_runnable_fingerprints_and_we_hash_every_byte(project: Project) -> None:
    large = project.folder / "large.bin"
    _sparse_file(large)
    full = hash_file(large, "sha256")
    fingerprint = _fingerprint(large)
    assert get_data_hash(str(large)) == fingerprint != full

    theirs = project.config("theirs.yaml", "chunked-fs", catalog_type="file-system")
    succeeded(project.run_sdk("large", theirs, "theirs"))
    ours = project.config(
        "ours.yaml",
        "runlog-chunked-fs",
        {"log_folder": str(project.log_folder), "fsync": False},
        catalog_config={
            "catalog_location": str(project.catalog_folder),
            "hash_algorithm": "sha256",
            "fsync": False,
        },
    )
    succeeded(project.run_sdk("large", ours, "ours"))

    store = load_store(ours)
    recorded = {
        run_id: store.get_step_log("publish", run_id).data_catalog[0].data_hash
        for run_id in ("theirs", "ours")
    }
    assert recorded == {"theirs": fingerprint, "ours": full}

    checked_ours = project.runlog("verify", "ours", "--config", str(ours))
    assert checked_ours.returncode == 0, checked_ours.stdout + checked_ours.stderr
    assert "fingerprint-only" not in checked_ours.stdout
    checked_theirs = project.runlog("verify", "theirs", "--config", str(theirs))
    assert checked_theirs.returncode == 0, checked_theirs.stdout + checked_theirs.stderr
    assert "fingerprint-only" in checked_theirs.stdout
