"""``StoreContract``: the behaviour every run log store owes runnable and the tools of this
package, as pytest tests a store's own test module binds to it.

The suite is one class composed of a part per operation, each a module of this package:
``create`` (runs created and stored whole, factories, summary), ``read`` (full and not full
reads, JSON), ``steps``, ``branches``, ``parameters`` (and the run config), ``status`` (and job
logs), ``errors`` (missing runs, invalid run ids), ``listing`` (listing, filters, deletes),
``search`` (searches equal to a read of every run) and ``concurrency`` (other processes),
over ``suite`` (fixtures and declarations) and ``tree`` (the run the read tests write).
``processes`` is the harness of the writer processes.
"""

from __future__ import annotations

from runlog_store.testing._checks import check_summary
from runlog_store.testing.store.branches import BranchTests
from runlog_store.testing.store.concurrency import ConcurrencyTests
from runlog_store.testing.store.create import CreateTests
from runlog_store.testing.store.errors import BAD_RUN_IDS, ErrorTests
from runlog_store.testing.store.listing import ListingTests
from runlog_store.testing.store.parameters import ParameterTests
from runlog_store.testing.store.read import ReadTests
from runlog_store.testing.store.search import SearchTests
from runlog_store.testing.store.status import StatusTests
from runlog_store.testing.store.steps import StepTests
from runlog_store.testing.store.suite import build_store
from runlog_store.testing.store.tree import build_tree


class StoreContract(
    CreateTests,
    ReadTests,
    StepTests,
    BranchTests,
    ParameterTests,
    StatusTests,
    ErrorTests,
    ListingTests,
    SearchTests,
    ConcurrencyTests,
):
    """What every run log store must do, as pytest tests; subclass it in a test module.

    **What it checks**: the API of runnable 0.50's stores (runs, steps, branches at any depth
    with maps and parallels nested in each other, parameters of every kind at root and branch
    scope, run config merges, statuses, job logs, reads full and not full, ``get_run_log_json``
    equal to the full model and accepted by runnable's own models when runnable is installed);
    the typed errors (``RunLogNotFoundError`` from every call on a missing run,
    ``StepLogNotFoundError``, ``BranchLogNotFoundError``, ``JobLogNotFoundError``,
    ``RunLogExistsError``; ``InvalidRunIdError`` for run ids no store may hold, with storage
    left as it was); listing, filters and deletes where offered; searches (``search_runs``,
    ``iter_runs``, pages) that answer what a read of every run answers; and, for stores that
    say ``supports_parallel_writes``, real writer processes: several at once lose no write,
    and a writer SIGKILLed at a random moment loses none it had acknowledged and leaves a run
    that reads and can be written.

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


__all__ = ["BAD_RUN_IDS", "StoreContract", "build_store", "build_tree", "check_summary"]
