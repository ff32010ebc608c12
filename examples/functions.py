"""The tasks of the example pipeline (pipeline.py, pipeline.yaml): plain Python functions.

runnable passes each function the parameters its signature names, and a map branch the item it
works on; a branch starts with no other parameters (runnable 0.50), so branches share data
through files. A catalog pattern is the same in every branch (``data/shards/*.json`` would
catalog every branch's shard in each branch), so the shards are put once, by a step after the
map. Files are written to a temporary name and renamed: the branches of a map run at the same
time, in one compute folder.

``EXAMPLE_BRANCH_SECONDS`` (an environment variable, 0 by default) makes each branch's ``fit``
sleep that many seconds, so the run lasts long enough to be watched as it runs (``runlog serve``
shows its branches finishing one by one; its browser tests use it).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

SETTINGS = Path("data/settings.json")
SHARDS = Path("data/shards")


@dataclass(frozen=True)
class Calibration:
    """An object parameter: pickled into the catalog, not written into the run log."""

    offset: float


def _write_atomically(path: Path, document: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(document))
    os.replace(temp, path)


def prepare(branches: int = 16) -> tuple[list[int], Calibration]:
    """The items the map iterates on, the settings file every branch reads, a calibration.
    Shards of an earlier run in this folder are removed first."""
    shutil.rmtree(SHARDS, ignore_errors=True)
    _write_atomically(SETTINGS, {"scale": 3})
    return list(range(branches)), Calibration(offset=0.25)


def load(item: int) -> int:
    """Read the settings the catalog copied in; the branch's first result."""
    scale = json.loads(SETTINGS.read_text())["scale"]
    return item * scale


def fit(item: int, rows: int) -> int:
    """Write the branch's shard into the compute folder, and its weight (after sleeping
    ``EXAMPLE_BRANCH_SECONDS``, if set)."""
    time.sleep(float(os.environ.get("EXAMPLE_BRANCH_SECONDS", "0")))
    weight = rows + 1
    _write_atomically(SHARDS / f"shard-{item:04d}.json", {"item": item, "weight": weight})
    return weight


def score(item: int, weight: int) -> tuple[float, int]:
    """A metric per branch, and the item, so the fan-in can check it saw every branch."""
    return round(0.5 + (weight % 97) / 200, 4), item


def count_shards() -> int:
    """A parallel branch: the shards every branch wrote, put into the catalog after it."""
    return len(list(SHARDS.glob("shard-*.json")))


def check_settings() -> bool:
    """The other parallel branch: the settings file came back intact."""
    return bool(json.loads(SETTINGS.read_text())["scale"] == 3)


def report(
    items: list[int],
    seen: list[int],
    weight: list[int],
    accuracy: list[float],
    shard_count: int,
    settings_ok: bool,
    calibration: Calibration,
) -> tuple[float, int]:
    """The fan-in: fails the run unless it saw every branch's values and every shard (the
    catalog copied them back before it ran)."""
    problems = []
    if sorted(seen) != items:
        problems.append(f"saw items {sorted(seen)}, expected {items}")
    if weight != [item * 3 + 1 for item in items]:
        problems.append(f"weights {weight} do not match the items")
    if len(accuracy) != len(items):
        problems.append(f"{len(accuracy)} accuracies for {len(items)} branches")
    if shard_count != len(items):
        problems.append(f"{shard_count} shards for {len(items)} branches")
    for item in items:
        shard = json.loads((SHARDS / f"shard-{item:04d}.json").read_text())
        if shard != {"item": item, "weight": item * 3 + 1}:
            problems.append(f"shard {item} holds {shard}")
    if not settings_ok:
        problems.append("the settings file did not come back intact")
    if calibration != Calibration(offset=0.25):
        problems.append(f"calibration came back as {calibration!r}")
    if problems:
        raise ValueError("; ".join(problems))
    _write_atomically(Path("data/report.json"), {"branches": len(seen), "best": max(accuracy)})
    return max(accuracy) + calibration.offset, len(seen)
