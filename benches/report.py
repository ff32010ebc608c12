"""Print the benchmark table as ratios (runnable time / ours) from a pytest-benchmark JSON file.

    python benches/report.py .benchmarks/latest.json

Absolute times on shared, noisy machines mean little; the ratio of two implementations measured
in the same run does. The probe of the disk the benchmarks ran on (benches/disk_probe.py) is
printed under the table: the ratios of writes move with it. For the "scale" group the ratio is
the cost of 1000 writes into a run of 9000 steps over the cost into an empty run (1.0 = flat);
for "put-again" it is the cost of a put of unchanged files over the cost of stat-ing them.
Where a group has a "reference" (the blake3 package), ours is also given as a multiple of its
time.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def _rounds_together(benches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Benchmarks run as interleaved rounds (one entry per round, ``extra_info`` naming the
    implementation and the round) as one entry per implementation: the median of its rounds,
    and each round's time kept for the ratios of each round."""
    merged: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for bench in benches:
        implementation = bench["extra_info"].get("implementation")
        if implementation is None:
            out.append(bench)
            continue
        entry = merged.get(implementation)
        if entry is None:
            entry = {
                "name": f"[{implementation}]",
                "extra_info": dict(bench["extra_info"]),
                "stats": {"median": 0.0},
                "rounds": {},
            }
            merged[implementation] = entry
            out.append(entry)
        entry["rounds"][bench["extra_info"]["round"]] = bench["stats"]["median"]
    for entry in merged.values():
        entry["stats"]["median"] = statistics.median(entry["rounds"].values())
    return out


def _ratio(ours: float, baseline: float, cost: bool) -> str:
    """A cost (ours over the baseline, for the scale groups) or a speed-up (the baseline over
    ours), as the table prints it. A speed-up under 2x keeps two decimals: goals of 1.0x and
    1.5x sit there, and 0.98x printed as 1.0x would read as met."""
    if cost:
        return f"{ours / baseline:.2f}"
    speed_up = baseline / ours
    return f"{speed_up:.2f}" if speed_up < 2 else f"{speed_up:.1f}"


def table(path: Path) -> str:
    data = json.loads(path.read_text())
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for bench in data["benchmarks"]:
        groups[bench["group"]].append(bench)
    groups = {group: _rounds_together(benches) for group, benches in groups.items()}
    lines = ["| benchmark | implementation | median | ratio |", "| --- | --- | --- | --- |"]
    for group, benches in groups.items():
        # A run narrowed with -k may leave a group without its baseline: its figures are
        # printed alone.
        baseline = next((b for b in benches if b["extra_info"].get("role") == "baseline"), None)
        base = baseline["stats"]["median"] if baseline is not None else None
        scale = group.startswith(("scale", "put-again"))
        reference = next((b for b in benches if b["extra_info"].get("role") == "reference"), None)  # type: ignore[union-attr]
        for bench in benches:
            median = bench["stats"]["median"]  # type: ignore[index]
            name = str(bench["name"]).split("[", 1)[-1].rstrip("]")
            if base is None or baseline is None:
                ratio = "(no baseline in this run)"
            elif bench is baseline:
                ratio = "1.0 (base)"
            else:
                ratio = _ratio(median, base, scale)
                ratio = f"{ratio}x the cost" if scale else f"**{ratio}x** faster"
                rounds = bench.get("rounds")
                if rounds and baseline.get("rounds"):
                    each = [
                        _ratio(t, baseline["rounds"][r], scale)
                        for r, t in sorted(rounds.items())
                        if r in baseline["rounds"]
                    ]
                    ratio += f" (rounds: {', '.join(each)})"
            if reference is not None and bench["extra_info"].get("role") == "ours":  # type: ignore[union-attr]
                ref = reference["stats"]["median"]  # type: ignore[index]
                ratio += f"; {median / ref:.2f}x the time of the reference"
            lines.append(f"| {group} | {name} | {_fmt(median)} | {ratio} |")
    probes = sorted(
        {
            str(b["extra_info"]["disk_probe"])
            for b in data["benchmarks"]
            if "disk_probe" in b["extra_info"]
        }  # type: ignore[index,operator]
    )
    machine = data.get("machine_info", {})
    lines.append("")
    lines.extend(probes)
    cores = machine.get("cpu", {}).get("count", "?")
    python = machine.get("python_version", "?")
    lines.append(f"{cores} cores, Python {python}, {data.get('datetime', '')[:19]}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else ".benchmarks/latest.json")))
