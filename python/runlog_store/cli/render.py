"""Run logs drawn for people: a tree of steps and branches with status, timings and errors."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from rich.text import Text
from rich.tree import Tree

from runlog_store.models import FAIL, SUCCESS, BranchLog, Parameter, RunLog, StepLog
from runlog_store.ops.runs import describe_code_identities, parse_time

STATUS_STYLE = {SUCCESS: "green", FAIL: "bold red", "PROCESSING": "yellow", "CREATED": "dim"}
_STATUS_MARK = {SUCCESS: "✔", FAIL: "✘", "PROCESSING": "…", "CREATED": "·"}


def step_window(step: StepLog) -> tuple[datetime, datetime] | None:
    """First start and last end of a step, its branches' steps included."""
    times: list[datetime] = []
    for attempt in step.attempts:
        for value in (attempt.start_time, attempt.end_time):
            parsed = parse_time(value)
            if parsed is not None:
                times.append(parsed)
    for branch in step.branches.values():
        for child in branch.steps.values():
            window = step_window(child)
            if window:
                times.extend(window)
    return (min(times), max(times)) if times else None


def run_window(run_log: RunLog) -> tuple[datetime, datetime] | None:
    windows = [w for s in run_log.steps.values() if (w := step_window(s))]
    if not windows:
        return None
    return min(w[0] for w in windows), max(w[1] for w in windows)


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``1 run``, ``2 runs``, ``0 runs``: a count with its noun, as a person writes it."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def format_age(seconds: float) -> str:
    """How long ago, in the units ``--older-than`` takes, the two largest that are not zero:
    ``42s``, ``5m30s``, ``2h``, ``3d4h``."""
    if seconds < 60:
        return format_seconds(seconds)
    whole = int(seconds)
    for unit, size, smaller, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if whole >= size:
            rest = (whole % size) // small_size
            return f"{whole // size}{unit}{f'{rest}{smaller}' if rest else ''}"
    return f"{whole // 60}m{f'{whole % 60}s' if whole % 60 else ''}"


def _status(status: str) -> Text:
    style = STATUS_STYLE.get(status, "")
    return Text(f"{_STATUS_MARK.get(status, '?')} {status}", style=style)


def _params(params: dict[str, Parameter], limit: int = 4, width: int = 40) -> str:
    shown = []
    for name, param in list(params.items())[:limit]:
        text = str(param.description)
        shown.append(f"{name}={text if len(text) <= width else text[: width - 1] + '…'}")
    if len(params) > limit:
        shown.append(f"+{len(params) - limit} more")
    return " ".join(shown)


def _step_label(step: StepLog, show_name: str) -> Text:
    label = Text.assemble(_status(step.status), " ", (show_name, "bold"), f"  {step.step_type}")
    window = step_window(step)
    if window:
        label.append(f"  {format_seconds((window[1] - window[0]).total_seconds())}", "cyan")
    if len(step.attempts) > 1:
        label.append(f"  {counted(len(step.attempts), 'attempt')}", "yellow")
    return label


def _add_step(node: Tree, step: StepLog, depth: int, max_branches: int) -> None:
    short = step.internal_name.rsplit(".", 1)[-1] if "." in step.internal_name else step.name
    child = node.add(_step_label(step, short))
    for attempt in step.attempts:
        if attempt.status == FAIL and attempt.message:
            child.add(
                Text(f"attempt {attempt.attempt_number} failed: {attempt.message.strip()}", "red")
            )
    # Parameters and metrics of the last attempt: the one whose outcome the step has.
    last = step.attempts[-1] if step.attempts else None
    if last is not None and last.input_parameters:
        child.add(Text(f"in: {_params(last.input_parameters)}", "dim"))
    if last is not None and last.output_parameters:
        child.add(Text(f"out: {_params(last.output_parameters)}", "dim"))
    if last is not None and last.user_defined_metrics:
        child.add(Text(f"metrics: {_params(last.user_defined_metrics)}", "magenta"))
    # A step after a map often catalogs a file per branch: as many lines as the branches hidden
    # below, so the same bound applies to them (a single line is drawn, not summed up).
    entries = step.data_catalog
    drawn = entries if len(entries) <= max_branches + 1 else entries[:max_branches]
    for entry in drawn:
        child.add(Text(f"catalog {entry.stage}: {entry.name}  {entry.data_hash[:12]}", "blue"))
    if len(drawn) < len(entries):
        stages = Counter(entry.stage for entry in entries[len(drawn) :])
        summary = ", ".join(f"{n} {stage}" for stage, n in stages.most_common())
        more = counted(len(entries) - len(drawn), "more catalog file")
        child.add(Text(f"… {more} ({summary})", "dim"))
    if depth <= 1 or not step.branches:
        if step.branches:
            child.add(Text(counted(len(step.branches), "branch", "branches"), "dim"))
        return
    branches = list(step.branches.values())
    # Failed branches first: they are what a reader is looking for.
    ordered = [b for b in branches if b.status == FAIL] + [b for b in branches if b.status != FAIL]
    for branch in ordered[:max_branches]:
        _add_branch(child, branch, depth - 1, max_branches)
    hidden = ordered[max_branches:]
    if hidden:
        counts = Counter(b.status for b in hidden)
        summary = ", ".join(f"{n} {status}" for status, n in counts.most_common())
        more = counted(len(hidden), "more branch", "more branches")
        child.add(Text(f"… {more} ({summary})", "dim"))


def _add_branch(node: Tree, branch: BranchLog, depth: int, max_branches: int) -> None:
    label = Text.assemble(_status(branch.status), " ", (branch.internal_name, "bold blue"))
    if branch.parameters:
        label.append(f"  {_params(branch.parameters)}", "dim")
    child = node.add(label)
    for step in branch.steps.values():
        _add_step(child, step, depth, max_branches)


def run_tree(run_log: RunLog, depth: int = 99, max_branches: int = 8) -> Tree:
    """The run as a rich Tree; ``depth`` limits nesting, ``max_branches`` the branches and the
    catalog entries drawn per step."""
    steps = list(run_log.iter_steps())
    branches = sum(len(s.branches) for s in steps)
    title = Text.assemble(
        ("Run ", "bold"), (run_log.run_id, "bold cyan"), "  ", _status(run_log.status)
    )
    if run_log.tag:
        title.append(f"  tag={run_log.tag}")
    window = run_window(run_log)
    if window:
        title.append(f"  {format_seconds((window[1] - window[0]).total_seconds())} wall", "cyan")
    title.append(
        f"  {counted(len(steps), 'step')}, {counted(branches, 'branch', 'branches')}", "dim"
    )
    tree = Tree(title)
    holders = [*run_log.iter_steps(), *([run_log.job] if run_log.job else [])]
    identities = describe_code_identities(holders, sha_length=12)
    if identities:
        tree.add(Text(f"code: {', '.join(identities)}", "dim"))
    if run_log.parameters:
        tree.add(Text(f"parameters: {_params(run_log.parameters, 6)}", "dim"))
    for step in run_log.steps.values():
        _add_step(tree, step, depth, max_branches)
    if run_log.job is not None:
        tree.add(Text.assemble("job ", _status(run_log.job.status)))
    return tree
