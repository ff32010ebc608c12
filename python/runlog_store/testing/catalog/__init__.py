"""``CatalogContract``: what every catalog owes runnable's steps and the run-level tools of this
package, as pytest tests a catalog's own test module binds to it.

The suite is one class composed of a part per operation, each a module of this package:
``put``, ``get``, ``sync`` (``sync_between_runs``) and ``runs`` (run ids, whole runs, summary),
over ``suite`` (the compute folder, fixtures and declarations).
"""

from __future__ import annotations

from runlog_store.testing.catalog.get import GetTests
from runlog_store.testing.catalog.put import PutTests
from runlog_store.testing.catalog.runs import RunTests
from runlog_store.testing.catalog.suite import COMPUTE, SAMPLE, files_under
from runlog_store.testing.catalog.sync import SyncTests


class CatalogContract(PutTests, GetTests, SyncTests, RunTests):
    """What every catalog must do, as pytest tests; subclass it in a test module.

    **What it checks**: ``put`` and ``get`` by glob patterns (nested folders, ``**``, ``?``,
    ``[!...]``), each entry's ``data_hash`` equal to the digest of the file's bytes by the
    configured algorithm (BLAKE3 by default, as ``blake3:<hex>``; SHA-256 as runnable's bare
    hex), entries as runnable records them (catalog paths ``<run_id>/<name>`` for a put and
    ``<name>`` for a get, accepted by runnable's own model when runnable is installed),
    ``store_copy=False`` hashing without storing, ``allow_file_not_found_exc``,
    ``NoMatchingFilesError`` naming the pattern or the run, patterns reaching outside the
    compute folder refused, runs kept apart, changed files replaced, runnable's
    ``*.execution.log`` files never copied back, ``sync_between_runs``, invalid run ids
    refused, a run id required outside a runnable run, a summary without secrets, and the
    run-level operations (``run_files``, ``download_run``, ``upload_run``, ``delete_run``) as
    a round trip.

    Each test runs in its own ``tmp_path`` (the working directory) with the compute data folder
    ``compute`` (relative, as runnable configures it) holding a few files in nested folders.

    **Fixtures a subclass provides**

    - ``catalog_config`` (required): a dict ``{"type": <registered catalog type>, **config
      keys}`` over fresh, empty storage kept outside ``compute`` (e.g. ``tmp_path /
      "catalog"``, a new bucket); the suite adds ``compute_data_folder`` (and, where a test
      needs it, ``hash_algorithm``) and builds the catalog with
      ``runlog_store.create_catalog``.
    - ``catalog`` (optional): the catalog under test; by default ``make_catalog()``.

    **Class attributes a subclass may set**

    - ``keeps_files = False`` for a catalog that records and copies nothing (``do-nothing``):
      the tests of stored files are not collected (they are not part of its contract), and
      the first test checks that it returns no entries and writes nothing.
    - ``moves_whole_runs = False`` for a catalog without the run-level operations
      (``run_files``, ``download_run``, ``upload_run``, ``delete_run``) that copies and
      pruning of runs need: their test is not collected.
    """


__all__ = ["COMPUTE", "SAMPLE", "CatalogContract", "files_under"]
