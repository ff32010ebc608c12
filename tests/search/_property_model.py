"""What the search property test generates and how it judges answers without the index.

- ``RunPlanner``: runs to write (parameters and metrics of every JSON type, case variants of
  strings, NaN and infinities, integers past 2**53, steps at two depths with attempts, times
  and commits), and changes to them;
- ``random_filter`` / ``random_order``: filters and orderings from a small grammar of the
  search language (every attribute kind, every operator, and/or/not, ``is null``, ``in``,
  ``like``/``ilike``, case variants of keywords, quoted names);
- ``independent_filters`` and ``independent_match``: a few filters evaluated straight over the
  full run logs (``get_run_log_by_id(full=True)``), code that shares nothing with the
  summaries or the query module, so the reference is not the code under test.

Everything is drawn from a ``random.Random`` the test seeds, so a failure replays from its seed.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

# --- canonical answers ----------------------------------------------------------------------


def canonical(summary: BaseModel) -> str:
    """A summary as comparable text: its JSON fields (``step_statuses`` is not one), NaN and
    the infinities spelled out so that NaN equals NaN."""
    return json.dumps(summary.model_dump(mode="json"), sort_keys=True, default=str)


# --- the runs ---------------------------------------------------------------------------------

STATUSES = ["SUCCESS", "FAIL", "PROCESSING", "CREATED", "TRIGGERED"]
TAGS = ["", "nightly", "Nightly", "NIGHTLY", "adhoc", "straße", "STRASSE"]
DAG_HASHES = ["", "d1", "d2", "D1"]
COMMITS = ["abc1", "abc2", "Def3", ""]
# Strings whose case folding is more than a change of letters (ß is "ss", the ligature ﬁ is
# "fi", İ is two code points), one code point of two UTF-8 bytes under ``_``, LIKE's own
# characters as data.
MODELS = [
    "xgb",
    "XGB",
    "Xgb",
    "lgbm",
    "straße",
    "STRASSE",
    "é",
    "É",
    "",
    "x_b",
    "x%b",
    "xéb",
    "ﬁle",
    "FILE",
    "İx",
    "i̇x",
]
BIG = 2**53 + 1
ROOT_STEPS = ["prep", "train", "eval"]
PARAM_NAMES = ["lr", "model", "epochs", "flag", "odd name", "cfg"]
METRIC_NAMES = ["acc", "loss"]


def nonfinite(value: float) -> Any:
    """Floats that JSON cannot carry travel as {"float": "nan"} to the worker processes."""
    return {"float": repr(value)} if not math.isfinite(value) else value


def _any_value(rng: random.Random) -> Any:
    kind = rng.randrange(9)
    if kind == 0:
        return rng.choice([0, 1, -3, 7, 100, BIG, -BIG, 2**63])
    if kind == 1:
        return rng.choice([0.0, -0.5, 0.1, 0.25, 1e-3, 2.5e10, 1.0])
    if kind == 2:
        return nonfinite(rng.choice([math.nan, math.inf, -math.inf]))
    if kind == 3:
        return rng.choice(MODELS)
    if kind == 4:
        return rng.choice([True, False])
    if kind == 5:
        return None
    if kind == 6:
        return rng.choice([[], [1, 2], ["a"]])
    if kind == 7:
        return rng.choice([{}, {"a": 1}])
    return rng.choice(["0.1", "1", "true"])


def _param_value(rng: random.Random, name: str) -> Any:
    """Mostly the type a name usually has, sometimes any other: a search must rank and compare
    mixed types across runs exactly as the scan does."""
    if rng.random() < 0.25:
        return _any_value(rng)
    if name == "lr":
        return rng.choice([0.001, 0.01, 0.1, 0.1, 0.5, 1, 2, -0.5])
    if name == "model":
        return rng.choice(MODELS)
    if name == "epochs":
        return rng.choice([1, 5, 10, 10, BIG, 2**53])
    if name == "flag":
        return rng.choice([True, False])
    if name == "cfg":
        return rng.choice([{"depth": 3}, [1, 2, 3], None])
    return _any_value(rng)


def _metric_value(rng: random.Random) -> Any:
    return nonfinite(
        rng.choice([0.5, 0.75, 0.9, 0.9, 1, 0, -1.5, 3, math.nan, math.inf, 0.123456789])
    )


class RunPlanner:
    """Plans of runs and of changes to them (plain data a worker process carries out)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def _time(self, day: int, second: int) -> str:
        hours, rest = divmod(second, 3600)
        return f"2026-01-{day:02d} {hours:02d}:{rest // 60:02d}:{rest % 60:02d}.000000"

    def _attempts(self, status: str) -> list[dict[str, Any]]:
        rng = self.rng
        attempts = []
        for _ in range(rng.choice([0, 1, 1, 1, 2])):
            day, second = rng.randint(1, 20), rng.randrange(0, 80000)
            attempts.append(
                {
                    "status": status,
                    "start": self._time(day, second),
                    "end": self._time(day, second + rng.choice([0, 1, 30, 90, 3599, 3600, 5000])),
                    "commit": rng.choice(COMMITS),
                }
            )
        return attempts

    def step(self, name: str, internal_name: str | None = None) -> dict[str, Any]:
        rng = self.rng
        status = rng.choice(["SUCCESS", "SUCCESS", "FAIL", "PROCESSING"])
        return {
            "name": name,
            "internal_name": internal_name or name,
            "status": status,
            "attempts": self._attempts(status),
        }

    def map_step(self) -> dict[str, Any]:
        rng = self.rng
        step = self.step("map")
        step["step_type"] = "map"
        step["attempts"] = []
        step["branches"] = [
            {
                "internal_name": f"map.{i}",
                "status": rng.choice(["SUCCESS", "FAIL"]),
                "steps": [self.step("work", f"map.{i}.work")],
            }
            for i in range(rng.randint(1, 3))
        ]
        return step

    def params(self, at_least: int = 0) -> dict[str, Any]:
        rng = self.rng
        names = rng.sample(PARAM_NAMES, rng.randint(at_least, len(PARAM_NAMES)))
        plan: dict[str, Any] = {"params": {n: _param_value(rng, n) for n in names}}
        if rng.random() < 0.3:
            plan["objects"] = {"weights": rng.choice(["model.pkl", "Model.pkl", "xgb"])}
        metrics = rng.sample(METRIC_NAMES, rng.randint(0, len(METRIC_NAMES)))
        plan["metrics"] = {m: _metric_value(rng) for m in metrics}
        return plan

    def create(self, run_id: str) -> dict[str, Any]:
        rng = self.rng
        steps = [self.step(n) for n in rng.sample(ROOT_STEPS, rng.randint(0, len(ROOT_STEPS)))]
        if rng.random() < 0.4:
            steps.append(self.map_step())
        return {
            "op": "create",
            "run_id": run_id,
            "dag_hash": rng.choice(DAG_HASHES),
            "tag": rng.choice(TAGS),
            "steps": steps,
            "status": rng.choice(["CREATED", "PROCESSING", "SUCCESS", "FAIL"]),
            **self.params(),
        }

    def change(self, run_id: str, steps_taken: set[str]) -> dict[str, Any]:
        """A change to a run: parameters or metrics set, a step added, its status set."""
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:
            return {"op": "params", "run_id": run_id, **self.params(at_least=1)}
        if kind == 1:
            free = [n for n in [*ROOT_STEPS, "extra"] if n not in steps_taken]
            if free:
                return {"op": "step", "run_id": run_id, "step": self.step(rng.choice(free))}
        return {"op": "status", "run_id": run_id, "status": rng.choice(STATUSES)}

    def slow_create(self, run_id: str) -> dict[str, Any]:
        """A run written in many calls, for a writer to be killed in the middle of."""
        plan = self.create(run_id)
        plan["steps"] = [self.step(f"s{i}") for i in range(40)] + [self.map_step()]
        plan["status"] = self.rng.choice(["SUCCESS", "FAIL"])
        return plan


# --- filters and orderings --------------------------------------------------------------------


def _kw(rng: random.Random, word: str) -> str:
    return rng.choice([word, word.upper(), word.capitalize()])


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _number(rng: random.Random) -> str:
    return rng.choice(
        ["0", "1", "-0.5", "0.1", "0.5", "1e-3", "2.5E10", "10", str(BIG), str(2**53), "-3", "3"]
    )


def _value(rng: random.Random, kind: str | None = None) -> str:
    kind = kind or rng.choice(["number", "number", "string", "bool"])
    if kind == "number":
        return _number(rng)
    if kind == "string":
        return _string(rng.choice([*MODELS, "0.1", "nightly", "model.pkl"]))
    return _kw(rng, rng.choice(["true", "false"]))


def _comparison(rng: random.Random, attr: str, kind: str | None = None) -> str:
    kind = kind or rng.choice(["number", "number", "string", "bool"])
    ops = ["=", "!="] if kind == "bool" else ["=", "!=", "<", "<=", ">", ">="]
    return f"{attr} {rng.choice(ops)} {_value(rng, kind)}"


def _in(rng: random.Random, attr: str, values: list[str]) -> str:
    chosen = rng.sample(values, rng.randint(1, min(3, len(values))))
    negated = _kw(rng, "not") + " " if rng.random() < 0.3 else ""
    return f"{attr} {negated}{_kw(rng, 'in')} ({', '.join(chosen)})"


def _null(rng: random.Random, attr: str) -> str:
    negated = " " + _kw(rng, "not") if rng.random() < 0.5 else ""
    return f"{attr} {_kw(rng, 'is')}{negated} {_kw(rng, 'null')}"


def _like(rng: random.Random, attr: str, patterns: list[str]) -> str:
    word = rng.choice(["like", "ilike"])
    negated = _kw(rng, "not") + " " if rng.random() < 0.2 else ""
    return f"{attr} {negated}{_kw(rng, word)} {_string(rng.choice(patterns))}"


def _param_attr(rng: random.Random, name: str, group: str = "params") -> str:
    if " " in name:
        return rng.choice([f"{group}.`{name}`", f'{group}."{name}"'])
    return rng.choice([f"{group}.{name}", f"{group}.`{name}`"])


def _predicate(rng: random.Random, run_ids: list[str]) -> str:
    kind = rng.randrange(14)
    if kind == 0:
        statuses = [*STATUSES, "UNREADABLE"]
        if rng.random() < 0.5:
            return f"status = {_string(rng.choice([*statuses, 'fail', 'Success']))}"
        return _in(rng, "status", [_string(s) for s in statuses])
    if kind == 1:
        if rng.random() < 0.5:
            return f"tag {rng.choice(['=', '!=', '<', '>='])} {_string(rng.choice(TAGS))}"
        return _like(rng, "tag", ["ni%", "NI%", "%ly", "_ightly", "%", "", "stra%", "%SS%"])
    if kind == 2:
        ids = run_ids or ["r000"]
        choice = rng.randrange(3)
        if choice == 0:
            return _in(rng, "run_id", [_string(i) for i in rng.sample(ids, min(3, len(ids)))])
        if choice == 1:
            return _like(rng, "run_id", ["r%", "c%", "%1", "r00_", "R%"])
        return f"run_id {rng.choice(['<', '>=', '='])} {_string(rng.choice(ids))}"
    if kind == 3:
        attr = rng.choice(["dag_hash", "commit", "failed_step"])
        values = {
            "dag_hash": DAG_HASHES,
            "commit": COMMITS,
            "failed_step": [*ROOT_STEPS, "map.0.work", "map", "job"],
        }[attr]
        choice = rng.randrange(3)
        if choice == 0:
            return _null(rng, attr)
        if choice == 1:
            return _like(rng, attr, ["a%", "d_", "map.%", "%", "ABC%"])
        return f"{attr} {rng.choice(['=', '!=', '<'])} {_string(rng.choice(values))}"
    if kind == 4:
        attr = rng.choice(["start_time", "end_time"])
        if rng.random() < 0.2:
            return _null(rng, attr)
        value = rng.choice(
            ["'2026-01-05'", "'2026-01-10T12:00'", "'2026-01-15 06:30:00'", "-1d", "-800d"]
        )
        return f"{attr} {rng.choice(['<', '<=', '>', '>=', '!='])} {value}"
    if kind == 5:
        if rng.random() < 0.2:
            return _null(rng, "duration")
        value = rng.choice(["0", "30", "90s", "1h", "3600", "5000", "1.5"])
        return f"duration {rng.choice(['<', '<=', '>', '>=', '=', '!='])} {value}"
    if kind in (6, 7, 8):
        name = rng.choice([*PARAM_NAMES, "weights", "missing"])
        attr = _param_attr(rng, name)
        choice = rng.randrange(6)
        if choice == 0:
            return _null(rng, attr)
        if choice == 1:
            patterns = ["x%", "X%", "%b", "x_b", "%", "STRA%", "stra%", "é", "x\\%b", "fi%", "_ile"]
            return _like(rng, attr, [*patterns, "stra_e", "%ss%", "i_x", "İ%", "i%"])
        if choice == 2:
            values = [_value(rng) for _ in range(3)]
            return _in(rng, attr, values)
        return _comparison(rng, attr)
    if kind == 9:
        attr = _param_attr(rng, rng.choice([*METRIC_NAMES, "missing"]), "metrics")
        if rng.random() < 0.2:
            return _null(rng, attr)
        return _comparison(rng, attr, "number")
    if kind == 10:
        name = rng.choice([*ROOT_STEPS, "map", "map.0.work", "map.2.work", "extra", "s3"])
        attr = f"step.{name}.status" if rng.random() < 0.7 else f"step.`{name}`.status"
        if rng.random() < 0.2:
            return _null(rng, attr)
        return f"{attr} {rng.choice(['=', '!='])} {_string(rng.choice(STATUSES))}"
    if kind == 11:
        return _comparison(rng, _param_attr(rng, "lr"), "number")
    if kind == 12:
        return f"params.model = {_string(rng.choice(MODELS))}"
    return f"status = {_string(rng.choice(STATUSES))}"


def random_filter(rng: random.Random, run_ids: list[str], depth: int = 0) -> str:
    """A filter of the language: predicates joined by and/or, negated, parenthesised."""
    roll = rng.random()
    if depth >= 2 or roll < 0.45:
        return _predicate(rng, run_ids)
    if roll < 0.6:
        return f"{_kw(rng, 'not')} {random_filter(rng, run_ids, depth + 1)}"
    if roll < 0.7:
        return f"({random_filter(rng, run_ids, depth + 1)})"
    joiner = _kw(rng, rng.choice(["and", "or"]))
    left = random_filter(rng, run_ids, depth + 1)
    right = random_filter(rng, run_ids, depth + 1)
    return f"({left}) {joiner} ({right})" if rng.random() < 0.5 else f"{left} {joiner} {right}"


ORDER_KEYS = [
    "start_time",
    "end_time",
    "duration",
    "run_id",
    "status",
    "tag",
    "dag_hash",
    "commit",
    "failed_step",
    "params.lr",
    "params.model",
    "params.epochs",
    "params.flag",
    "params.`odd name`",
    "metrics.acc",
    "metrics.loss",
    "step.train.status",
    "step.map.0.work.status",
]


def random_order(rng: random.Random) -> str | list[str] | None:
    """None (the default: start_time desc), a comma list, or a list of keys."""
    if rng.random() < 0.2:
        return None
    keys = []
    for key in rng.sample(ORDER_KEYS, rng.randint(1, 3)):
        direction = rng.choice(["", " asc", " desc", " DESC"])
        keys.append(key + direction)
    return keys if rng.random() < 0.3 else ", ".join(keys)


# --- the independent reference: a few filters over full run logs ------------------------------

Judge = Callable[[Any], bool]


def _param(run: Any, name: str, kind: str) -> Any:
    """The root parameter ``name`` of a full run log when it is of ``kind`` (json values and
    object names count as params, metrics as metrics); a sentinel when there is none."""
    parameter = run.parameters.get(name)
    if parameter is None:
        return _MISSING
    if kind == "metric":
        return parameter.value if parameter.kind == "metric" else _MISSING
    return parameter.value if parameter.kind in ("json", "object") else _MISSING


_MISSING = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_test(op: str, bound: float) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        if not _is_number(value):
            return False
        left = float(value)
        if math.isnan(left):
            return False
        return {
            ">": left > bound,
            ">=": left >= bound,
            "<": left < bound,
            "<=": left <= bound,
            "=": left == bound,
            "!=": left != bound,
        }[op]

    return test


def independent_filters(rng: random.Random) -> list[tuple[str, Judge]]:
    """Filters with a judge written against the full run log's own fields: a run's status (the
    literal upper-cased), a root JSON parameter compared as a number or a string, a metric."""
    status = rng.choice(STATUSES)
    literal = rng.choice([status, status.lower(), status.capitalize()])
    op = rng.choice([">", ">=", "<", "<=", "=", "!="])
    bound = rng.choice([0.1, 0.5, 1.0, 10.0, float(BIG), -0.5])
    number = _number_test(op, bound)
    metric_op = rng.choice([">", "<=", "!="])
    metric_bound = rng.choice([0.5, 0.9, 1.0])
    metric = _number_test(metric_op, metric_bound)
    model = rng.choice(MODELS)
    return [
        (f"status = {_string(literal)}", lambda run: run.status == status),
        (f"params.lr {op} {bound!r}", lambda run: number(_param(run, "lr", "json"))),
        (f"params.epochs {op} {bound!r}", lambda run: number(_param(run, "epochs", "json"))),
        (
            f"metrics.acc {metric_op} {metric_bound!r}",
            lambda run: metric(_param(run, "acc", "metric")),
        ),
        (
            f"params.model = {_string(model)}",
            lambda run: (
                _param(run, "model", "json") == model
                and isinstance(_param(run, "model", "json"), str)
            ),
        ),
        (
            f"status = {_string(literal)} and params.model is null",
            lambda run: run.status == status and _param(run, "model", "json") in (_MISSING, None),
        ),
    ]
