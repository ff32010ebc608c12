"""Columns of runs named in the search language: what ``runlog list --columns`` and the runs page
of ``runlog serve`` add to a table of runs (a parameter, a metric, a step's status, a field of
the run), each read as the filter language reads an attribute, and a run's value of each.

The command line and the runs page draw the values their own way; what a column is, and which
value of a run it holds, is written once here so that both show the same runs the same way.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from runlog_store.exceptions import RunLogStoreError
from runlog_store.ops.runs import RunSummary


class Column(NamedTuple):
    """A column of run attributes: the attribute as typed (its header), what it is (``params``,
    ``metrics``, ``step``, or the attribute of a field of the run: ``status``, ``start_time``...)
    and its name (a parameter's, a metric's, a step's; empty for a field of the run)."""

    header: str
    kind: str
    name: str


class ColumnError(RunLogStoreError, ValueError):
    """A column that is not an attribute of runs; ``header`` is the column as typed."""

    def __init__(self, message: str, header: str) -> None:
        super().__init__(message)
        self.header = header


class _Missing:
    """The value of a column a run does not have (not a JSON null, which a run may hold)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

# The attributes of the filter language that are fields of a summary under another name.
_RUN_FIELDS = {
    "run_id": "run_id",
    "status": "status",
    "tag": "tag",
    "start_time": "start",
    "end_time": "end",
    "duration": "duration_seconds",
    "dag_hash": "dag_hash",
    "commit": "commit",
    "failed_step": "failed_step",
}


def split_columns(text: str) -> list[str]:
    """``params.lr, metrics.`a,b`, step."x,y".status``: split at the commas outside backticks
    and double quotes (which quote a name of the filter language), blanks left out."""
    parts, current, quote = [], "", ""
    for char in text:
        if quote:
            current += char
            if char == quote:
                quote = ""
        elif char in '`"':
            quote = char
            current += char
        elif char == ",":
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [part for part in parts if part]


def parse_columns(text: str) -> list[Column]:
    """The columns a comma-separated list names, each read as the filter language reads an
    attribute; ColumnError names the first that is none."""
    # The parser (lark) is imported by the first list of columns, not by every command.
    from runlog_store.search.query import ATTRIBUTES_HELP, IsNull, parse_filter

    found = []
    for header in split_columns(text):
        try:
            expr = parse_filter(f"{header} is null")
        except RunLogStoreError:
            expr = None
        if not isinstance(expr, IsNull):
            raise ColumnError(
                f"{header!r} is not an attribute of runs; they are {ATTRIBUTES_HELP}", header
            )
        found.append(Column(header, expr.attr.kind, expr.attr.name))
    return found


def column_value(run: RunSummary, column: Column) -> object:
    """The run's value of the column: a field of the run, or a parameter's or metric's value
    as JSON reads it (None for a JSON null), or a step's status; MISSING when it has none."""
    if column.kind in _RUN_FIELDS:
        value = getattr(run, _RUN_FIELDS[column.kind])
        return MISSING if value is None else value
    held: dict[str, Any] = {
        "params": run.params,
        "metrics": run.metrics,
        "step": run.step_statuses,
    }[column.kind]
    return held.get(column.name, MISSING)


__all__ = ["MISSING", "Column", "ColumnError", "column_value", "parse_columns", "split_columns"]
