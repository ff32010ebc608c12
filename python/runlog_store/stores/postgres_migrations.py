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
    Migration(
        2,
        "the runs' summaries, parameters, metrics and step statuses as columns and rows a search "
        "reads through indexes",
        (
            # A run's summary (what a search answers with, as JSON) and the fields a filter or
            # an ordering reads, kept by the write that changes them. A run written before this
            # migration has no summary (NULL) until the first search summarizes it: its
            # merge is the Rust core's, which SQL cannot run. Text compares and sorts in code
            # point order ("C"), as the search language says, whatever the database's locale;
            # the *_folded columns hold Python's casefold of the text, for ilike.
            """
            ALTER TABLE {schema}.runs
                ADD COLUMN summary text,
                ADD COLUMN status text COLLATE "C",
                ADD COLUMN tag text COLLATE "C",
                ADD COLUMN start_time double precision,
                ADD COLUMN end_time double precision,
                ADD COLUMN duration double precision,
                ADD COLUMN dag_hash text COLLATE "C",
                ADD COLUMN commit_id text COLLATE "C",
                ADD COLUMN failed_step text COLLATE "C",
                ADD COLUMN step_count integer,
                ADD COLUMN branch_count integer,
                ADD COLUMN run_id_folded text COLLATE "C",
                ADD COLUMN status_folded text COLLATE "C",
                ADD COLUMN tag_folded text COLLATE "C",
                ADD COLUMN dag_hash_folded text COLLATE "C",
                ADD COLUMN commit_id_folded text COLLATE "C",
                ADD COLUMN failed_step_folded text COLLATE "C",
                ADD COLUMN status_key text COLLATE "C" GENERATED ALWAYS AS (left(status, 100))
                    STORED,
                ADD COLUMN tag_key text COLLATE "C" GENERATED ALWAYS AS (left(tag, 100)) STORED
            """,
            # The default order (newest start first, ties by run id) read straight from an
            # index, alone and after the most common filters. An index holds at most the first
            # 100 characters of a text a run may make as long as it likes (a B-tree entry is at
            # most 2,704 bytes: a longer one would fail the write), and a name (its start and
            # md5 for one of 100 characters or more), kept in columns of their own (*_key), so
            # that a search reads them from the index alone; it checks the whole text and name
            # on the rows it finds.
            "CREATE INDEX runs_start ON {schema}.runs "
            '(start_time DESC NULLS LAST, run_id COLLATE "C")',
            "CREATE INDEX runs_status ON {schema}.runs "
            '(status_key, start_time DESC NULLS LAST, run_id COLLATE "C")',
            "CREATE INDEX runs_tag ON {schema}.runs "
            '(tag_key, start_time DESC NULLS LAST, run_id COLLATE "C")',
            "CREATE INDEX runs_end ON {schema}.runs (end_time)",
            "CREATE INDEX runs_duration ON {schema}.runs (duration)",
            "CREATE INDEX runs_unsummarized ON {schema}.runs (run_id) WHERE summary IS NULL",
            # Root parameters and metrics, one row per run and name: a typed value (type
            # 'number' in num, NULL for NaN; 'string' in text; 'bool' as 1.0 or 0.0 in num;
            # 'null', 'list', 'object' with neither), so that a comparison finds only values of
            # its literal's type through the index of numbers or of texts. Those indexes carry
            # the run id: a search reads the runs of a value from the index alone.
            """
            CREATE TABLE {schema}.run_params (
                run_id text NOT NULL REFERENCES {schema}.runs ON DELETE CASCADE,
                name text COLLATE "C" NOT NULL,
                type text NOT NULL,
                num double precision,
                text text COLLATE "C",
                folded text COLLATE "C",
                name_key text COLLATE "C" GENERATED ALWAYS AS (CASE WHEN length(name) < 100
                    THEN name ELSE left(name, 68) || md5(name) END) STORED,
                text_key text COLLATE "C" GENERATED ALWAYS AS (left(text, 100)) STORED
            )
            """,
            "CREATE UNIQUE INDEX run_params_key ON {schema}.run_params (run_id, name_key)",
            "CREATE INDEX run_params_num ON {schema}.run_params (name_key, type, num) "
            "INCLUDE (run_id) WHERE num IS NOT NULL",
            "CREATE INDEX run_params_text ON {schema}.run_params "
            "(name_key, type, text_key) INCLUDE (run_id) WHERE text_key IS NOT NULL",
            """
            CREATE TABLE {schema}.run_metrics (
                run_id text NOT NULL REFERENCES {schema}.runs ON DELETE CASCADE,
                name text COLLATE "C" NOT NULL,
                type text NOT NULL,
                num double precision,
                text text COLLATE "C",
                folded text COLLATE "C",
                name_key text COLLATE "C" GENERATED ALWAYS AS (CASE WHEN length(name) < 100
                    THEN name ELSE left(name, 68) || md5(name) END) STORED,
                text_key text COLLATE "C" GENERATED ALWAYS AS (left(text, 100)) STORED
            )
            """,
            "CREATE UNIQUE INDEX run_metrics_key ON {schema}.run_metrics (run_id, name_key)",
            "CREATE INDEX run_metrics_num ON {schema}.run_metrics (name_key, type, num) "
            "INCLUDE (run_id) WHERE num IS NOT NULL",
            "CREATE INDEX run_metrics_text ON {schema}.run_metrics "
            "(name_key, type, text_key) INCLUDE (run_id) WHERE text_key IS NOT NULL",
            # The status of every step at every depth, by internal name (step.<name>.status).
            """
            CREATE TABLE {schema}.run_steps (
                run_id text NOT NULL REFERENCES {schema}.runs ON DELETE CASCADE,
                name text COLLATE "C" NOT NULL,
                status text COLLATE "C",
                folded text COLLATE "C",
                name_key text COLLATE "C" GENERATED ALWAYS AS (CASE WHEN length(name) < 100
                    THEN name ELSE left(name, 68) || md5(name) END) STORED,
                status_key text COLLATE "C" GENERATED ALWAYS AS (left(status, 100)) STORED
            )
            """,
            "CREATE UNIQUE INDEX run_steps_key ON {schema}.run_steps (run_id, name_key)",
            "CREATE INDEX run_steps_status ON {schema}.run_steps "
            "(name_key, status_key) INCLUDE (run_id)",
        ),
    ),
    Migration(
        3,
        "the merged run log kept at a run's end, with the stamp of the rows it was merged from",
        (
            # A full read of an ended run is this one value when the run's rows are still those
            # it was merged from (the stamp, recomputed at the read, says so), not a merge of
            # every row: see PostgresRunLogStore._read_full.
            "ALTER TABLE {schema}.runs ADD COLUMN merged bytea, ADD COLUMN merged_stamp text",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version

__all__ = ["LATEST", "MIGRATIONS", "VERSION_TABLE", "Migration"]
