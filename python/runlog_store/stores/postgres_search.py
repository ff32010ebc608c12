"""The ``postgres`` store's search: run summaries kept as columns and rows, searched in SQL.

A run's summary (``RunSummary``, what a search answers with) is kept in its ``runs`` row, with
the fields a filter or an ordering reads as columns, and its root parameters, metrics and step
statuses as rows of ``run_params``, ``run_metrics`` and ``run_steps`` (migration 2 of
``postgres_migrations``), all indexed. The write that changes a run's own fields (its creation,
its status, its parameters, its job: never a step's write) summarizes it again in the same
transaction: the database is the truth, and a search reads it without reading any run. A run
written before the tables had these columns is summarized by the first search that finds it.

A filter parsed by ``search.query`` becomes one SQL statement, its values bound as parameters,
never put into the text. It answers as ``query.matches`` and ``query.sort_runs`` over the
summaries do (tests/stores/test_postgres_search.py holds them to it): a value compares only
with a literal of its own type, text in code point order (the columns are ``COLLATE "C"``),
missing values last in either direction, ties by run id.

Two things PostgreSQL's text cannot do the language's way are done here: text with a NUL
character (PostgreSQL refuses one) is stored with NUL as the two characters U+0001 U+0001 and
U+0001 as U+0001 U+0002, an escape that keeps equality and code point order; ``like`` reads
that text back unescaped and cut at its first NUL, as ``query.like_regex`` does, and ``ilike``
reads a column folded by ``query.fold`` (Unicode's full case folding, not PostgreSQL's ``lower``).

Pages are by keyset: a page token holds the sort key of the last run of its page (and its run
id, the tiebreak), and the next page starts after it, wherever runs were added or removed
meanwhile; the token also names its filter and ordering, and is refused by another search.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from runlog_store import _core
from runlog_store.exceptions import RunLogStoreError
from runlog_store.ops import runs as run_ops
from runlog_store.ops.runs import RunSummary
from runlog_store.search import paging, query
from runlog_store.search.query import (
    And,
    Attr,
    Compare,
    Expr,
    In,
    Like,
    Literal_,
    OrderKey,
)
from runlog_store.stores.chunked import chunk_name

if TYPE_CHECKING:
    from psycopg import Connection, Cursor

    from runlog_store.search.paging import RunPage
    from runlog_store.stores.postgres import PostgresRunLogStore

_DOCUMENT_KIND = {"step": "StepLog", "branch": "BranchLog"}

# --- text as PostgreSQL keeps it -----------------------------------------------------------------

_NUL, _ONE = "\x00", "\x01"
_ESCAPED_NUL, _ESCAPED_ONE = "\x01\x01", "\x01\x02"


def escape_text(text: str) -> str:
    """Text as a search column holds it: NUL as U+0001 U+0001, U+0001 as U+0001 U+0002 (one
    to one, in the same code point order; text without either is unchanged)."""
    if _ONE in text:
        text = text.replace(_ONE, _ESCAPED_ONE)
    if _NUL in text:
        text = text.replace(_NUL, _ESCAPED_NUL)
    return text


def _escaped(text: str | None) -> str | None:
    return None if text is None else escape_text(text)


def _cut(text: str | None) -> str | None:
    """Text as ``like`` reads it: up to its first NUL (``query.like_regex``)."""
    return None if text is None else text.split(_NUL, 1)[0]


def _unescaped_cut(column: str) -> str:
    """SQL of an escaped column's text up to its first NUL, unescaped: what ``like`` matches.
    The first U+0001 U+0001 of an escaped text is its first NUL: before it, every U+0001 is
    followed by U+0002."""
    return f"replace(split_part({column}, chr(1) || chr(1), 1), chr(1) || chr(2), chr(1))"


# --- rows of a summary ---------------------------------------------------------------------------

# The runs columns a summary sets, in the order of ``SearchRows.run``.
RUN_COLUMNS = (
    "summary",
    "status",
    "tag",
    "start_time",
    "end_time",
    "duration",
    "dag_hash",
    "commit_id",
    "failed_step",
    "step_count",
    "branch_count",
    "run_id_folded",
    "status_folded",
    "tag_folded",
    "dag_hash_folded",
    "commit_id_folded",
    "failed_step_folded",
)
VALUE_COLUMNS = ("run_id", "name", "type", "num", "text", "folded")
STEP_COLUMNS = ("run_id", "name", "status", "folded")

ValueRow = tuple[str, str, str, float | None, str | None, str | None]
StepRow = tuple[str, str, str | None, str | None]


class SearchRows(NamedTuple):
    """The search rows of one run: its ``runs`` columns (``RUN_COLUMNS``), and its rows of
    ``run_params``, ``run_metrics`` (``VALUE_COLUMNS``) and ``run_steps`` (``STEP_COLUMNS``)."""

    run_id: str
    run: tuple[Any, ...]
    params: list[ValueRow]
    metrics: list[ValueRow]
    steps: list[StepRow]


def _value_rows(rows: Sequence[tuple[Any, ...]]) -> list[ValueRow]:
    return [
        (run_id, escape_text(name), kind, num, _escaped(text), _cut(folded))
        for run_id, name, kind, num, text, folded in rows
    ]


def search_rows(summary: RunSummary | Mapping[str, Any]) -> SearchRows:
    """The search rows of a run summary (a RunSummary, or the dict of its fields the Rust
    core gives): the values of the file-system stores' index (``query.rows_of``) as
    PostgreSQL keeps them. Used by every write that summarizes a run, and by a bulk load."""
    rows = query.rows_of(summary, "", 0.0)
    get = summary.get if isinstance(summary, Mapping) else summary.__dict__.get
    (run_id, status, tag, start, end, duration, dag_hash, commit, failed_step, text) = rows.run[:10]
    texts = (run_id, status, tag, dag_hash, commit, failed_step)
    run = (
        text,
        _escaped(status),
        _escaped(tag),
        start,
        end,
        duration,
        _escaped(dag_hash),
        _escaped(commit),
        _escaped(failed_step),
        get("steps"),
        get("branches"),
        *(None if t is None else _cut(query.fold(t)) for t in texts),
    )
    steps = [
        (run_id, escape_text(name), _escaped(status), _cut(folded))
        for _, name, status, folded in rows.steps
    ]
    return SearchRows(run_id, run, _value_rows(rows.params), _value_rows(rows.metrics), steps)


def summarize(
    location: str, run_id: str, document: bytes, nodes: Iterable[tuple[str, str, int, bytes]]
) -> RunSummary | dict[str, Any]:
    """The summary of a run from its row and its nodes' rows (kind, internal name, created_ns,
    body), merged as a full read merges them; an UNREADABLE summary for one that cannot be
    read, as a search that reads every run (``ops.runs.read_summary``) gives it."""
    try:
        objects = [
            (
                chunk_name(_DOCUMENT_KIND[kind], name, run_id),  # type: ignore[arg-type]
                _core.chunk_with_header(created_ns, bytes(body)),
            )
            for kind, name, created_ns, body in nodes
        ]
        merged, _ = _core.merge_chunks(location, bytes(document), objects, run_id=run_id)
        assert merged is not None  # the full view always has a document
        return run_ops.summary_fields(_core.summarize_run(merged, run_id))
    except RunLogStoreError as exc:
        reason = run_ops._unreadable_reason(exc)
    except ValueError as exc:
        reason = str(exc)
    return run_ops._unreadable(run_id, reason)


def _sql(store: PostgresRunLogStore, statement: str) -> bytes:
    return store._sql(statement)


_SET_RUN = ", ".join(f"{column} = %(c{n})s" for n, column in enumerate(RUN_COLUMNS))
_RUN_VALUES = ", ".join(f"%(c{n})s" for n in range(len(RUN_COLUMNS)))
_VALUE_ARRAYS = (
    "%({p}n)s::text[], %({p}t)s::text[], %({p}v)s::float8[], %({p}x)s::text[], %({p}f)s::text[]"
)
_STEP_ARRAYS = "%(sn)s::text[], %(ss)s::text[], %(sf)s::text[]"


def _statement_params(rows: SearchRows) -> dict[str, Any]:
    """The parameters of ``_UPSERT_ROWS`` and ``_INSERT_RUN``: the run's columns, and each
    table's rows as arrays of their columns."""
    params: dict[str, Any] = {"id": rows.run_id}
    params.update({f"c{n}": value for n, value in enumerate(rows.run)})
    for prefix, values in (("p", rows.params), ("m", rows.metrics)):
        params[f"{prefix}n"] = [row[1] for row in values]
        params[f"{prefix}t"] = [row[2] for row in values]
        params[f"{prefix}v"] = [row[3] for row in values]
        params[f"{prefix}x"] = [row[4] for row in values]
        params[f"{prefix}f"] = [row[5] for row in values]
    params["sn"] = [row[1] for row in rows.steps]
    params["ss"] = [row[2] for row in rows.steps]
    params["sf"] = [row[3] for row in rows.steps]
    return params


def _upserts(new: bool) -> str:
    """The CTEs that make a run's rows of the three tables those of the parameters: rows of
    names it no longer has deleted, the others upserted (the two statements of a table touch
    different rows: one statement's parts see one snapshot). ``new``: for a run inserted by
    the CTE ``r`` (none when it existed), which has no rows to delete."""
    source = "SELECT r.run_id, u.* FROM r, " if new else "SELECT %(id)s, u.* FROM "
    parts = []
    for table, prefix, columns, arrays, update in (
        ("run_params", "p", VALUE_COLUMNS, _VALUE_ARRAYS.format(p="p"), _VALUE_UPDATE),
        ("run_metrics", "m", VALUE_COLUMNS, _VALUE_ARRAYS.format(p="m"), _VALUE_UPDATE),
        ("run_steps", "s", STEP_COLUMNS, _STEP_ARRAYS, _STEP_UPDATE),
    ):
        if not new:
            parts.append(
                f"del_{prefix} AS (DELETE FROM {{schema}}.{table} WHERE run_id = %(id)s "
                f"AND NOT (name = ANY(%({prefix}n)s::text[])))"
            )
        parts.append(
            f"ins_{prefix} AS (INSERT INTO {{schema}}.{table} ({', '.join(columns)}) "
            f"{source}unnest({arrays}) AS u "
            f"ON CONFLICT (run_id, name_key) DO UPDATE SET {update})"
        )
    return ", ".join(parts)


_VALUE_UPDATE = (
    "type = EXCLUDED.type, num = EXCLUDED.num, text = EXCLUDED.text, folded = EXCLUDED.folded"
)
_STEP_UPDATE = "status = EXCLUDED.status, folded = EXCLUDED.folded"
# A run's summary put into its row and its search rows, in one statement.
_UPSERT_ROWS = f"WITH {_upserts(False)} UPDATE {{schema}}.runs SET {_SET_RUN} WHERE run_id = %(id)s"
# A new run's row with its summary and its search rows, in one statement; nothing when the run
# exists (its one row: the run's id, when it was inserted).
_INSERT_RUN = (
    "WITH r AS (INSERT INTO {schema}.runs "
    f"(run_id, document, {', '.join(RUN_COLUMNS)}) VALUES (%(id)s, %(document)s, {_RUN_VALUES}) "
    "ON CONFLICT (run_id) DO NOTHING RETURNING run_id), "
    f"{_upserts(True)} SELECT run_id FROM r"
)


def store_summary(
    store: PostgresRunLogStore, cur: Cursor[Any], summary: RunSummary | Mapping[str, Any]
) -> None:
    """Put a run's summary into its row and its search rows (in place of those it had), in
    the caller's transaction: one statement."""
    cur.execute(_sql(store, _UPSERT_ROWS), _statement_params(search_rows(summary)))


def insert_run(store: PostgresRunLogStore, cur: Cursor[Any], run_id: str, document: bytes) -> bool:
    """Insert a run (its fields ``document``, no node) with its summary and search rows, unless
    it exists: one statement. Whether it was inserted."""
    summary = summarize(store._location(run_id), run_id, document, [])
    params = _statement_params(search_rows(summary))
    params["document"] = document
    cur.execute(_sql(store, _INSERT_RUN), params)
    return cur.fetchone() is not None


def _copy(
    store: PostgresRunLogStore,
    cur: Cursor[Any],
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> None:
    rows = list(rows)
    if not rows:
        return
    statement = f"COPY {{schema}}.{table} ({', '.join(columns)}) FROM STDIN"
    with cur.copy(_sql(store, statement)) as copy:
        for row in rows:
            copy.write_row(row)


def summarize_again(store: PostgresRunLogStore, cur: Cursor[Any], run_id: str) -> None:
    """Summarize a run again from its rows as the caller's transaction sees them (the run's
    row locked by it: a write of the run's own fields)."""
    cur.execute(_sql(store, "SELECT document FROM {schema}.runs WHERE run_id = %s"), [run_id])
    row = cur.fetchone()
    if row is None:
        return  # deleted: its search rows went with it
    document = bytes(row[0])
    cur.execute(
        _sql(
            store,
            "SELECT kind, internal_name, created_ns, body FROM {schema}.nodes WHERE run_id = %s",
        ),
        [run_id],
    )
    summary = summarize(store._location(run_id), run_id, document, cur.fetchall())
    store_summary(store, cur, summary)


def summarize_pending(store: PostgresRunLogStore) -> int:
    """Summarize the runs that have no summary (written before migration 2), each in a
    transaction of its own holding its row; how many. Two searches doing it at once skip each
    other's runs (SKIP LOCKED) rather than wait."""

    def pending(cur: Cursor[Any]) -> bool:
        cur.execute(
            _sql(store, "SELECT EXISTS (SELECT 1 FROM {schema}.runs WHERE summary IS NULL)")
        )
        row = cur.fetchone()
        return bool(row and row[0])

    # One indexed statement (runs_unsummarized) when there is none, as after the first search.
    if not store._transaction("", pending, atomic=False):
        return 0
    done = 0
    while True:

        def one(cur: Cursor[Any]) -> bool:
            cur.execute(
                _sql(
                    store,
                    "SELECT run_id FROM {schema}.runs WHERE summary IS NULL LIMIT 1 "
                    "FOR NO KEY UPDATE SKIP LOCKED",
                )
            )
            row = cur.fetchone()
            if row is None:
                return False
            summarize_again(store, cur, str(row[0]))
            return True

        if not store._transaction("", one):
            return done
        done += 1


def copy_runs(
    store: PostgresRunLogStore,
    conn: Connection[Any],
    runs: Iterable[tuple[bytes, RunSummary | Mapping[str, Any]]],
) -> int:
    """Load runs straight into the tables with COPY, in one transaction: each a run log
    document (the run's own fields, as ``runs.document`` holds them) and its summary, whose
    rows are made as a write makes them (``search_rows``). For loading many runs at once (the
    search benchmark's million); no run of them may exist. How many were loaded."""
    count = 0
    run_columns = ("run_id", "document", *RUN_COLUMNS)
    with conn.transaction(), conn.cursor() as cur:
        params: list[ValueRow] = []
        metrics: list[ValueRow] = []
        steps: list[StepRow] = []
        with cur.copy(
            _sql(store, f"COPY {{schema}}.runs ({', '.join(run_columns)}) FROM STDIN")
        ) as copy:
            for document, summary in runs:
                rows = search_rows(summary)
                copy.write_row((rows.run_id, document, *rows.run))
                params += rows.params
                metrics += rows.metrics
                steps += rows.steps
                count += 1
        _copy(store, cur, "run_params", VALUE_COLUMNS, params)
        _copy(store, cur, "run_metrics", VALUE_COLUMNS, metrics)
        _copy(store, cur, "run_steps", STEP_COLUMNS, steps)
    return count


# --- filters and orderings as SQL ----------------------------------------------------------------

# The runs column of each attribute of a run.
_COLUMNS = {
    "run_id": 'runs.run_id COLLATE "C"',
    "status": "runs.status",
    "tag": "runs.tag",
    "start_time": "runs.start_time",
    "end_time": "runs.end_time",
    "duration": "runs.duration",
    "dag_hash": "runs.dag_hash",
    "commit": "runs.commit_id",
    "failed_step": "runs.failed_step",
}
_FOLDED = {
    "run_id": "runs.run_id_folded",
    "status": "runs.status_folded",
    "tag": "runs.tag_folded",
    "dag_hash": "runs.dag_hash_folded",
    "commit": "runs.commit_id_folded",
    "failed_step": "runs.failed_step_folded",
}
_TABLES = {"params": "run_params", "metrics": "run_metrics", "step": "run_steps"}
_SQL_OP = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
# What a comparison of a text says of its first 100 characters (nothing, for !=).
_PREFIX_OP = {"=": "=", "!=": None, "<": "<=", "<=": "<=", ">": ">=", ">=": ">="}
RUN_ID_KEY = 'runs.run_id COLLATE "C"'
# A parameter's, metric's or step's condition with at most this many rows gives the runs a
# search sorts (compile_page): about the square root of 100 times a million runs, where reading
# that many runs and reading runs in order until a page of 100 is full cost alike.
NARROW_LIMIT = 10_000
# The characters of a text an index holds (the *_key columns of postgres_migrations).
KEY_LENGTH = 100


@dataclass(frozen=True)
class SortKey:
    """One term of an ordering in SQL: its expression, its direction, and the type of its
    values (what a page token may hold for it)."""

    sql: str
    descending: bool
    kind: str  # "num", "text" or "rank"


class _Compiler(query.FilterSql):
    """PostgreSQL's dialect, over the store's tables."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.params = []
        self.per_row = False

    def table(self, kind: str) -> str:
        return f"{self.schema}.{_TABLES[kind]}"

    def _exists(self, attr: Attr, condition: str, values: list[Any]) -> str:
        """Whether the run has a row of the attribute's name meeting ``condition`` (on ``v``).
        A condition every match must meet (``per_row``) is checked run by run as the runs are
        read in order: ``OFFSET 0`` keeps the planner from making it a join or a hash of every
        row of the value (``compile_page`` starts from the index of values when it has few
        rows); elsewhere (under ``or``, ``not``) the planner chooses."""
        name = escape_text(attr.name)
        key = self.name_key(name)
        self.params += [name, *values]
        offset = " OFFSET 0" if self.per_row else ""
        return (
            f"EXISTS (SELECT 1 FROM {self.table(attr.kind)} v WHERE v.run_id = runs.run_id "
            f"AND v.name_key = {key} AND v.name = %s AND {condition}{offset})"
        )

    def name_key(self, name: str) -> str:
        """SQL of the ``name_key`` of a name (postgres_migrations), its parameters added: the
        name itself when shorter than 100 characters, else its start and its md5."""
        self.params += [name] * 4
        return "(CASE WHEN length(%s) < 100 THEN %s ELSE left(%s, 68) || md5(%s) END)"

    def value_condition(self, attr: Attr, op: str, literal: Literal_) -> tuple[str, list[Any], str]:
        """The condition on a row ``v`` of a parameter, metric or step (its name aside) that
        its value compares so with the literal, its parameters, and the column it compares."""
        sql_op = _SQL_OP[op]
        value: Any = literal.value
        if literal.kind == "bool":
            value = 1.0 if value else 0.0
        elif literal.kind == "string":
            value = escape_text(str(value))
        if attr.kind == "step":
            return f"v.status {sql_op} %s", [value], "status"
        column = "text" if literal.kind == "string" else "num"
        kind = "number" if literal.kind in ("number", "time") else literal.kind
        return f"(v.type = %s AND v.{column} {sql_op} %s)", [kind, value], column

    def compare(self, attr: Attr, op: str, literal: Literal_) -> str:
        if attr.kind in ("params", "metrics", "step"):
            condition, values, _ = self.value_condition(attr, op, literal)
            return self._exists(attr, condition, values)
        value: Any = literal.value
        if literal.kind == "string":
            value = escape_text(str(value))
        column = _COLUMNS[attr.kind]
        sql_op = _SQL_OP[op]
        if attr.kind in ("status", "tag") and op == "=":
            # Through the index of its first 100 characters (all of a shorter text).
            key = f"runs.{attr.kind}_key"
            if len(value) < KEY_LENGTH:
                self.params.append(value)
                return f"({key} = %s)"
            self.params += [value, value]
            return f"({key} = left(%s, {KEY_LENGTH}) AND {column} = %s)"
        self.params.append(value)
        return f"({column} {sql_op} %s AND {column} IS NOT NULL)"

    def narrowing(self, expr: Expr) -> tuple[str, bool] | None:
        """For a condition every match must meet that compares a parameter, metric or step
        (``=``, ``<``..., or ``in``): the run ids of the rows meeting it, read through the
        index of their name and values, at most ``NARROW_LIMIT`` + 1, and whether they are
        exactly those (else more); None for another condition."""
        if isinstance(expr, Compare):
            attr, tests = expr.attr, [(expr.op, expr.value)]
        elif isinstance(expr, In) and not expr.negated:
            attr, tests = expr.attr, [("=", value) for value in expr.values]
        else:
            return None
        if attr.kind not in ("params", "metrics", "step"):
            return None
        # Per value, through the index of the name and its values, in its order (the
        # planner, which misjudges how many rows a value has, might read the whole table).
        # Those indexes hold a name (its start and md5 when long) and the first 100 characters
        # of a text: the runs found may be more than those that match, which the statement
        # checks again unless they are not (``exact``).
        reads = []
        table = self.table(attr.kind)
        name = escape_text(attr.name)
        exact = len(name) < KEY_LENGTH
        for op, literal in tests:
            value: Any = literal.value
            prefix_op = _PREFIX_OP[op]
            condition = f"v.name_key = {self.name_key(name)}"
            if attr.kind == "step" or literal.kind == "string":
                if attr.kind == "step":
                    text, key = "v.status_key", "v.name_key, v.status_key"
                else:
                    text, key = "v.text_key", "v.name_key, v.type, v.text_key"
                    condition += " AND v.type = 'string'"
                condition += f" AND {text} IS NOT NULL"
                value = escape_text(str(value))
                # A text shorter than the prefix equal to it: that is the whole text.
                exact = exact and op == "=" and len(value) < KEY_LENGTH
                if prefix_op is not None:
                    condition += f" AND {text} {prefix_op} left(%s, {KEY_LENGTH})"
                    self.params.append(value)
            else:
                key = "v.name_key, v.type, v.num"
                if literal.kind == "bool":
                    value = 1.0 if value else 0.0
                condition += f" AND v.type = %s AND v.num {_SQL_OP[op]} %s"
                self.params += ["bool" if literal.kind == "bool" else "number", value]
            reads.append(
                f"(SELECT v.run_id FROM {table} v WHERE {condition} "
                f"ORDER BY {key} LIMIT {NARROW_LIMIT + 1})"
            )
        if len(reads) == 1:
            return reads[0][1:-1], exact  # a run has one row of a name
        # DISTINCT: an ``in`` may name a value twice (1 and 1.0).
        sql = (
            f"SELECT DISTINCT run_id FROM ({' UNION ALL '.join(reads)}) AS found "
            f"LIMIT {NARROW_LIMIT + 1}"
        )
        return sql, exact

    def is_null(self, attr: Attr, negated: bool) -> str:
        word = "" if negated else "NOT "
        if attr.kind in ("params", "metrics"):
            return word + self._exists(attr, "v.type <> 'null'", [])
        if attr.kind == "step":
            return word + self._exists(attr, "v.status IS NOT NULL", [])
        return f"{_COLUMNS[attr.kind]} IS {'NOT NULL' if negated else 'NULL'}"

    def like(self, expr: Like) -> str:
        attr = expr.attr
        pattern = expr.pattern.split(_NUL, 1)[0]  # as query.like_regex reads it
        negation = "NOT " if expr.negated else ""
        if attr.kind in ("params", "metrics", "step"):
            text = "v.status" if attr.kind == "step" else "v.text"
            column = "v.folded" if expr.folded else _unescaped_cut(text)
            found = self._exists(attr, f"{text} IS NOT NULL AND {column} LIKE %s ESCAPE ''", [])
            self.params.append(pattern)
            return f"({negation}{found})"
        if expr.folded:
            column = _FOLDED[attr.kind]
        elif attr.kind == "run_id":
            column = RUN_ID_KEY  # a run id holds no NUL nor U+0001 (validate_run_id)
        else:
            column = _unescaped_cut(_COLUMNS[attr.kind])
        self.params.append(pattern)
        raw = _COLUMNS[attr.kind]
        return f"({negation}({column} LIKE %s ESCAPE '' AND {raw} IS NOT NULL))"

    def order(self, order: Sequence[OrderKey]) -> tuple[str, list[SortKey]]:
        """The joins of an ordering, and its keys; a missing value is NULL, last in both
        directions (NULLS LAST)."""
        joins: list[str] = []
        keys: list[SortKey] = []
        for number, key in enumerate(order):
            attr, descending = key.attr, key.descending
            if attr.kind not in ("params", "metrics", "step"):
                kind = "text" if attr.kind in _FOLDED else "num"
                keys.append(SortKey(_COLUMNS[attr.kind], descending, kind))
                continue
            alias = f"o{number}"
            joins.append(
                f"LEFT JOIN {self.table(attr.kind)} {alias} ON {alias}.run_id = runs.run_id "
                f"AND {alias}.name_key = {self.name_key(escape_text(attr.name))} "
                f"AND {alias}.name = %s"
            )
            self.params.append(escape_text(attr.name))
            if attr.kind == "step":
                keys.append(SortKey(f"{alias}.status", descending, "text"))
                continue
            # The rank of the kind of value (numbers, text, booleans; NULL for a missing
            # value, NaN, null, a list or an object), then the value: a number (or a boolean's
            # 0 or 1) or a text, each in a key of its own type.
            rank = (
                f"(CASE WHEN {alias}.type = 'number' AND {alias}.num IS NOT NULL THEN 0 "
                f"WHEN {alias}.type = 'string' THEN 1 WHEN {alias}.type = 'bool' THEN 2 END)"
            )
            keys += [
                SortKey(rank, descending, "rank"),
                SortKey(
                    f"(CASE WHEN {alias}.type <> 'string' THEN {alias}.num END)", descending, "num"
                ),
                SortKey(
                    f"(CASE WHEN {alias}.type = 'string' THEN {alias}.text END)", descending, "text"
                ),
            ]
        keys.append(SortKey(RUN_ID_KEY, False, "text"))
        return " ".join(joins), keys


def _order_terms(keys: Sequence[SortKey]) -> str:
    return ", ".join(
        f"k{n} {'DESC' if k.descending else 'ASC'} NULLS LAST" for n, k in enumerate(keys)
    )


def _after(keys: Sequence[SortKey], values: Sequence[Any], params: list[Any]) -> str:
    """The condition of the rows after the one whose sort key is ``values``, in the order of
    ``keys`` (missing values last in both directions; the last key, the run id, never NULL)."""
    disjuncts: list[str] = []
    equal: list[str] = []
    equal_params: list[Any] = []
    for key, value in zip(keys, values, strict=True):
        if value is not None:
            op = "<" if key.descending else ">"
            disjuncts.append(" AND ".join([*equal, f"({key.sql} {op} %s OR {key.sql} IS NULL)"]))
            params += [*equal_params, value]
            equal.append(f"{key.sql} = %s")
            equal_params.append(value)
        else:
            equal.append(f"{key.sql} IS NULL")
    return "(" + " OR ".join(disjuncts) + ")" if disjuncts else "false"


def _conjuncts(expr: Expr | None) -> list[Expr]:
    """The conditions of a filter every match must meet: the items of its top-level ``and``."""
    if expr is None:
        return []
    if isinstance(expr, And):
        return [item for part in expr.items for item in _conjuncts(part)]
    return [expr]


def compile_page(
    schema: str,
    expr: Expr | None,
    order: Sequence[OrderKey],
    after: Sequence[Any] | None,
    limit: int,
) -> tuple[str, list[Any], list[SortKey]]:
    """The statement of a page (its runs' summary JSON, then their sort keys, in order), its
    parameters, and the sort keys. ``after``: the sort key of the last run of the page before
    (None: the first page).

    The planner cannot tell how many runs a parameter's or metric's condition keeps (one
    table holds every name's values, and it takes their columns as independent), so the
    statement decides as it runs: a condition every match must meet on a parameter, metric
    or step whose rows, read through the index of values, are at most ``NARROW_LIMIT`` gives
    the runs to sort (a rare value: those few runs read); when each such condition has more,
    the runs are read in order (through an index of the first key where it has one) and
    checked one by one until the page is full (a common value: soon). The first condition
    with few rows wins; the other parts are skipped by one-time filters.

    After a run whose first key has a value, the page is the rows after it with the same or a
    later value of that key, then those without one: two parts, each searched in order and
    cut at ``limit`` on its own (one condition that allowed both would keep PostgreSQL from
    starting at the cursor)."""
    compiler = _Compiler(schema)
    items = _conjuncts(expr)
    # The run ids of each narrowing condition, as MATERIALIZED CTEs: read once, when counted.
    ctes: list[str] = []
    exact: list[int | None] = []  # the item a narrowing's runs meet exactly, if they do
    for number, item in enumerate(items):
        found = compiler.narrowing(item)
        if found is not None:
            ctes.append(f"m{len(ctes)} AS MATERIALIZED ({found[0]})")
            exact.append(number if found[1] else None)
    cte_params = compiler.params
    compiler.params = []
    joins, keys = compiler.order(order)
    join_params = compiler.params
    wheres: list[tuple[str, list[Any]]] = []
    compiler.per_row = True  # every item is a condition every match must meet
    for item in items:
        compiler.params = []
        wheres.append((compiler.where(item), compiler.params))
    selected = ", ".join(f"{key.sql} AS k{n}" for n, key in enumerate(keys))
    terms = _order_terms(keys)

    # (join, one-time condition, the item it need not check): the runs of the first narrowing
    # condition with few rows (every other condition checked on them, and that one too unless
    # they are exactly its runs), or all runs when none has.
    few = [f"(SELECT count(*) FROM m{n}) <= {NARROW_LIMIT}" for n in range(len(ctes))]
    many = [f"(SELECT count(*) FROM m{n}) > {NARROW_LIMIT}" for n in range(len(ctes))]
    variants = [
        (f"JOIN m{n} ON m{n}.run_id = runs.run_id", [*many[:n], few[n]], exact[n])
        for n in range(len(ctes))
    ]
    variants.append(("", many, None))

    # The cursor's parts: (condition, parameters).
    cursors: list[tuple[str, list[Any]]] = []
    if after is not None:
        first, first_value = keys[0], after[0]
        condition_params: list[Any] = []
        condition = _after(keys, after, condition_params)
        if first_value is not None:
            op = "<=" if first.descending else ">="
            cursors.append(
                (f"{first.sql} {op} %s AND {condition}", [first_value, *condition_params])
            )
            cursors.append((f"{first.sql} IS NULL", []))
        else:
            cursors.append((condition, condition_params))
    else:
        cursors.append(("", []))

    parts: list[str] = []
    params: list[Any] = list(cte_params)
    for join, once, checked in variants:
        for cursor, cursor_params in cursors:
            conditions = list(once)
            part_params: list[Any] = [*join_params]
            for number, (where, where_params) in enumerate(wheres):
                if number != checked:
                    conditions.append(where)
                    part_params += where_params
            if cursor:
                conditions.append(cursor)
                part_params += cursor_params
            where_sql = " AND ".join(conditions) or "true"
            parts.append(
                f"SELECT runs.summary, {selected} FROM {schema}.runs runs {join} {joins} "
                f"WHERE {where_sql} ORDER BY {terms} LIMIT %s"
            )
            params += [*part_params, limit]
    with_sql = f"WITH {', '.join(ctes)} " if ctes else ""
    if len(parts) == 1:
        return with_sql + parts[0], params, keys
    union = " UNION ALL ".join(f"({part})" for part in parts)
    sql = f"{with_sql}SELECT * FROM ({union}) AS page ORDER BY {terms} LIMIT %s"
    return sql, [*params, limit], keys


# --- page tokens ---------------------------------------------------------------------------------

_TOKEN_FORMAT = "keyset-1"


def encode_token(filter_text: str | None, order: Sequence[OrderKey], key: Sequence[Any]) -> str:
    """The token of the page after the run whose sort key is ``key``, in this search."""
    query_name = paging.query_digest(filter_text, order)
    return paging.pack_token({"format": _TOKEN_FORMAT, "query": query_name, "after": list(key)})


def _fits(value: Any, kind: str) -> bool:
    if value is None:
        return True
    if kind == "text":
        return isinstance(value, str)
    if kind == "rank":
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def decode_token(
    token: str, filter_text: str | None, order: Sequence[OrderKey], keys: Sequence[SortKey]
) -> list[Any]:
    """The sort key a token of this search starts after; RunLogStoreError for a token of
    another search (another filter or ordering, another store's kind of token) or anything
    that is no token."""
    payload = paging.unpack_token(token)
    if payload.get("format") != _TOKEN_FORMAT or payload.get("query") != paging.query_digest(
        filter_text, order
    ):
        raise paging.token_refused(token)
    after = payload.get("after")
    if (
        not isinstance(after, list)
        or len(after) != len(keys)
        or after[-1] is None
        or not all(_fits(value, key.kind) for value, key in zip(after, keys, strict=True))
    ):
        raise paging.token_refused(token)
    return after


# --- searching -----------------------------------------------------------------------------------


def search_page(
    store: PostgresRunLogStore,
    expr: Expr | None,
    order: Sequence[OrderKey],
    after: Sequence[Any] | None,
    limit: int,
) -> list[tuple[RunSummary, list[Any]]]:
    """Up to ``limit`` summaries of the runs matching ``expr`` after the sort key ``after``
    (None: from the first), in order, each with its sort key."""
    sql, params, _ = compile_page(store._schema(), expr, order, after, limit)

    def read(cur: Cursor[Any]) -> list[tuple[Any, ...]]:
        cur.execute(sql.encode(), params)
        return cur.fetchall()

    rows = store._transaction("", read, atomic=False)  # one statement
    return [(RunSummary.model_validate_json(row[0]), list(row[1:])) for row in rows]


def search_runs(
    store: PostgresRunLogStore,
    filter_text: str | None,
    order_by: str | Sequence[str] | None,
    max_results: int,
    page_token: str | None,
) -> RunPage:
    """``search_runs`` of the store (``BaseRunLogStore.search_runs`` says what it answers)."""
    from runlog_store.search.paging import RunPage
    from runlog_store.stores.base import _check_page_size

    _check_page_size("max_results", max_results)
    expr = query.parse_filter(filter_text)
    order = query.parse_order_by(order_by)
    after = None
    if page_token is not None:
        keys = _Compiler(store._schema()).order(order)[1]
        after = decode_token(page_token, filter_text, order, keys)
    summarize_pending(store)
    # max_results + 1: whether there is a next page, without counting every match.
    found = search_page(store, expr, order, after, max_results + 1)
    token = None
    if len(found) > max_results:
        found = found[:max_results]
        token = encode_token(filter_text, order, found[-1][1])
    return RunPage(runs=[summary for summary, _ in found], next_page_token=token)


def iter_runs(
    store: PostgresRunLogStore,
    filter_text: str | None,
    order_by: str | Sequence[str] | None,
    page_size: int,
) -> Iterator[RunSummary]:
    """``iter_runs`` of the store: pages of ``page_size`` by keyset, each one statement."""
    from runlog_store.stores.base import _check_page_size

    _check_page_size("page_size", page_size)
    expr = query.parse_filter(filter_text)
    order = query.parse_order_by(order_by)
    summarize_pending(store)
    after: list[Any] | None = None
    while True:
        found = search_page(store, expr, order, after, page_size)
        yield from (summary for summary, _ in found)
        if len(found) < page_size:
            return
        after = found[-1][1]


__all__ = [
    "RUN_COLUMNS",
    "SearchRows",
    "SortKey",
    "compile_page",
    "copy_runs",
    "decode_token",
    "encode_token",
    "escape_text",
    "insert_run",
    "iter_runs",
    "search_page",
    "search_rows",
    "search_runs",
    "store_summary",
    "summarize",
    "summarize_again",
    "summarize_pending",
]
