"""Tasks of the test pipelines (flaky.py, killed.py, nested.py), and the map they share.

Copied with the pipelines into each test's folder and run there by runnable itself.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from runnable import Map, Pipeline, PythonTask, json

# While this file exists, ``flaky`` fails for the items in FAILING (the test removes it and
# retries the run).
FAIL_MARKER = Path("fail-once")
FAILING = frozenset({2, 5})
# While this file exists, the Pool worker running item KILL_ITEM's second step SIGKILLs itself.
KILL_MARKER = Path("kill-armed")
KILL_ITEM = 5


def make_items(branches: int) -> list[int]:
    return list(range(branches))


def first(item: int) -> int:
    return item + 100


def flaky(item: int, a: int) -> int:
    if item in FAILING and FAIL_MARKER.exists():
        raise RuntimeError(f"item {item} fails while {FAIL_MARKER} exists")
    return a * 2


def killed_in_the_middle(item: int, a: int) -> int:
    if item == KILL_ITEM and KILL_MARKER.exists():
        os.kill(os.getpid(), signal.SIGKILL)
    return a * 2


def last(b: int) -> int:
    return b + 1


def total(items: list[int], c: list[int]) -> int:
    expected = [(item + 100) * 2 + 1 for item in items]
    if c != expected:
        raise ValueError(f"the map returned {c}, expected {expected}")
    return sum(c)


def nothing() -> None:
    """A step that only has files to put."""


def plain() -> str:
    return "plain"


def nested_report(items: list[int], a: list[int], p: str) -> int:
    if a != [item + 100 for item in items] or p != "plain":
        raise ValueError(f"the nested map returned {a} and the plain branch {p!r}")
    return len(a)


def map_pipeline(middle: Callable[[int, int], int]) -> Pipeline:
    """prepare -> train (a map of first, ``middle``, last) -> report."""
    branch = Pipeline(
        steps=[
            PythonTask(name="first", function=first, returns=[json("a")]),
            PythonTask(name="middle", function=middle, returns=[json("b")]),
            PythonTask(name="last", function=last, returns=[json("c")]),
        ]
    )
    return Pipeline(
        steps=[
            PythonTask(name="prepare", function=make_items, returns=[json("items")]),
            Map(name="train", branch=branch, iterate_on="items", iterate_as="item"),
            PythonTask(name="report", function=total, returns=[json("total")]),
        ]
    )


def files() -> dict[str, str]:
    """``Pipeline.execute`` arguments: the configuration and parameters files the test names
    (RUNNABLE_CONFIGURATION_FILE, RUNNABLE_PARAMETERS_FILE). ``execute`` must be called from
    the pipeline module's own function: runnable records that as the pipeline's definition
    (``killed.main``), which ``runnable retry`` imports and calls again."""
    return {
        "configuration_file": os.environ.get("RUNNABLE_CONFIGURATION_FILE", ""),
        "parameters_file": os.environ.get("RUNNABLE_PARAMETERS_FILE", ""),
    }
