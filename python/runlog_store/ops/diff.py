"""What differs between two runs: the questions asked when one run fails and the other did not.

Only what can explain a difference in outcome is compared: parameters, metrics, the code that
ran, the content of the data, the statuses of steps and the DAG. Run ids, times and paths
differ between any two runs and would bury the rest, so they are left out.

Runs are compared as merged JSON dicts, so runs of any store, layout or runnable version can be
compared with each other.

Many runs (a sweep) are compared by their summaries instead (``diff_summaries``): what a search
returns, from the store's index, without reading every run whole. That compares what tells a
sweep's runs apart: the run's status, tag, DAG hash and commit, its root parameters and its
root metrics.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel

from runlog_store.ops.runs import RunSummary, attempts_of, describe_code_identities, walk_steps

SECTIONS = ("run", "parameter", "metric", "code", "data", "step", "dag")


class Difference(BaseModel):
    """One thing that differs; ``None`` on a side means that run does not have it."""

    section: str
    key: str
    a: str | None
    b: str | None


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _holders(run: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, step or job) of every step at every depth, and the job."""
    for step in walk_steps(run.get("steps")):
        yield str(step.get("internal_name") or step.get("name") or ""), step
    if isinstance(run.get("job"), dict):
        yield "job", run["job"]


def _parameters(run: dict[str, Any], metrics: bool) -> dict[str, str]:
    found: dict[str, str] = {}
    params = run.get("parameters")
    if isinstance(params, dict):
        for name, param in params.items():
            if isinstance(param, dict) and (param.get("kind") == "metric") == metrics:
                found[name] = _value(param.get("value"))
    if metrics:
        # Metrics a step recorded in its last attempt, named by the step that recorded them.
        for step_name, holder in _holders(run):
            attempts = attempts_of(holder)
            recorded = attempts[-1].get("user_defined_metrics") if attempts else None
            if isinstance(recorded, dict):
                for name, param in recorded.items():
                    value = param.get("value") if isinstance(param, dict) else param
                    found[f"{step_name}: {name}"] = _value(value)
    return found


def _code(run: dict[str, Any]) -> dict[str, str]:
    """The code identities of the run, all steps together (a run normally has one)."""
    identities = describe_code_identities(holder for _, holder in _holders(run))
    return {"code identity": ", ".join(identities)} if identities else {}


def _data(run: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for step_name, holder in _holders(run):
        entries = holder.get("data_catalog")
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if isinstance(entry, dict):
                key = f"{step_name}: {entry.get('stage') or 'entry'} {entry.get('name')}"
                found[key] = str(entry.get("data_hash") or "")
    return found


def _steps(run: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for step_name, holder in _holders(run):
        status = str(holder.get("status") or "")
        attempts = len(attempts_of(holder))
        found[step_name] = f"{status} after {attempts} attempts" if attempts > 1 else status
    return found


def _dag_differences(
    a: Any, b: Any, path: str, into: list[tuple[str, str | None, str | None]]
) -> None:
    """Where two DAGs differ, descending only while both sides are mappings: a node one DAG
    lacks is one difference, not one per field of it."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            where = f"{path}.{key}" if path else str(key)
            if key not in a:
                into.append((where, None, _value(b[key])))
            elif key not in b:
                into.append((where, _value(a[key]), None))
            else:
                _dag_differences(a[key], b[key], where, into)
    elif a != b:
        into.append((path or "dag", _value(a), _value(b)))


def _dag(run: dict[str, Any]) -> Any:
    config = run.get("run_config")
    return config.get("dag") if isinstance(config, dict) else None


def _run(run: dict[str, Any]) -> dict[str, str]:
    return {key: str(run.get(key) or "") for key in ("status", "tag", "dag_hash")}


def diff_runs(a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
    """Every difference between two merged run logs, section by section in SECTIONS order."""
    extractors: dict[str, Callable[[dict[str, Any]], dict[str, str]]] = {
        "run": _run,
        "parameter": lambda run: _parameters(run, metrics=False),
        "metric": lambda run: _parameters(run, metrics=True),
        "code": _code,
        "data": _data,
        "step": _steps,
    }
    found: list[Difference] = []
    for section, extract in extractors.items():
        left, right = extract(a), extract(b)
        keys = list(left) + [k for k in right if k not in left]
        found.extend(
            Difference(section=section, key=key, a=left.get(key), b=right.get(key))
            for key in keys
            if left.get(key) != right.get(key)
        )
    dag: list[tuple[str, str | None, str | None]] = []
    _dag_differences(_dag(a), _dag(b), "", dag)
    found.extend(Difference(section="dag", key=k, a=x, b=y) for k, x, y in dag)
    return found


# The sections of a comparison of many runs, and the prefix of their keys in the filter language
# (``params.lr``); the run's own attributes have none (``status``).
SUMMARY_SECTIONS = {"run": "", "parameter": "params.", "metric": "metrics."}
_RUN_ATTRIBUTES = ("status", "tag", "dag_hash", "commit")


class RunsDifference(BaseModel):
    """One thing that differs across runs: its value in each run that has it, by run id (a
    run without it is left out of ``values``)."""

    section: str
    key: str
    values: dict[str, Any]

    @property
    def attribute(self) -> str:
        """The key as the filter language names it: ``params.lr``, ``status``."""
        return SUMMARY_SECTIONS[self.section] + self.key


def _summary_values(summary: RunSummary, section: str) -> dict[str, Any]:
    if section == "parameter":
        return summary.params
    if section == "metric":
        return summary.metrics
    found = {key: getattr(summary, key) for key in _RUN_ATTRIBUTES}
    return {key: value for key, value in found.items() if value is not None}


def diff_summaries(summaries: Sequence[RunSummary]) -> list[RunsDifference]:
    """What differs across runs: every run attribute, root parameter and root metric whose
    value is not the same JSON in all of them, or that some of them lack; section by section
    (run, parameter, metric), keys in the order first met."""
    found: list[RunsDifference] = []
    for section in SUMMARY_SECTIONS:
        held = [(s.run_id, _summary_values(s, section)) for s in summaries]
        keys = list(dict.fromkeys(key for _, values in held for key in values))
        for key in keys:
            values = {run_id: values[key] for run_id, values in held if key in values}
            if len(values) < len(held) or len({_value(v) for v in values.values()}) > 1:
                found.append(RunsDifference(section=section, key=key, values=values))
    return found


__all__ = [
    "SECTIONS",
    "SUMMARY_SECTIONS",
    "Difference",
    "RunsDifference",
    "diff_runs",
    "diff_summaries",
]
