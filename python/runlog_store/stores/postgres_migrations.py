"""The tables of the ``postgres`` store, as numbered migrations applied in order.

A database holds the migrations applied to it in ``<schema>.schema_version`` (one row per
migration). A store brings a database forward to :data:`LATEST` at its first use, under an
advisory lock, so two processes starting at once apply each migration once; a database whose
newest row is past :data:`LATEST` was written by a newer release of the package, and the store
refuses it (``SchemaVersionError``) rather than write rows that release may read otherwise.

Migrations only ever add: a migration once released is never edited, a change is a new one.
``{schema}`` in a statement is the store's schema, quoted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS {schema}.schema_version (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "runs, and their steps and branches as rows",
        (
            # The run's own fields (everything but its steps) as one JSON document: the bytes
            # the Rust core patches and merges, NaN and key order as runnable writes them
            # (jsonb would reorder keys and refuse NaN). `modified` orders the listing.
            """
            CREATE TABLE {schema}.runs (
                run_id text PRIMARY KEY,
                document bytea NOT NULL,
                created timestamptz NOT NULL DEFAULT clock_timestamp(),
                modified timestamptz NOT NULL DEFAULT clock_timestamp()
            )
            """,
            "CREATE INDEX runs_modified ON {schema}.runs (modified DESC, run_id DESC)",
            # Each step (without its branches) and each branch (without its steps) of a run: a
            # write of one is an upsert of its row, never a rewrite of the run. `created_ns` is
            # kept by every rewrite: siblings are ordered by when they were first stored.
            """
            CREATE TABLE {schema}.nodes (
                run_id text NOT NULL REFERENCES {schema}.runs ON DELETE CASCADE,
                kind text NOT NULL CHECK (kind IN ('step', 'branch')),
                internal_name text NOT NULL,
                created_ns bigint NOT NULL,
                body bytea NOT NULL,
                modified timestamptz NOT NULL DEFAULT clock_timestamp(),
                PRIMARY KEY (run_id, kind, internal_name)
            )
            """,
        ),
    ),
)

LATEST = MIGRATIONS[-1].version

__all__ = ["LATEST", "MIGRATIONS", "VERSION_TABLE", "Migration"]
