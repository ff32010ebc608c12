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


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


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
        label.append(f"  {len(step.attempts)} attempts", "yellow")
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
    for entry in step.data_catalog:
        child.add(Text(f"catalog {entry.stage}: {entry.name}  {entry.data_hash[:12]}", "blue"))
    if depth <= 1 or not step.branches:
        if step.branches:
            child.add(Text(f"{len(step.branches)} branches", "dim"))
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
        child.add(Text(f"… {len(hidden)} more branches ({summary})", "dim"))


def _add_branch(node: Tree, branch: BranchLog, depth: int, max_branches: int) -> None:
    label = Text.assemble(_status(branch.status), " ", (branch.internal_name, "bold blue"))
    if branch.parameters:
        label.append(f"  {_params(branch.parameters)}", "dim")
    child = node.add(label)
    for step in branch.steps.values():
        _add_step(child, step, depth, max_branches)


def run_tree(run_log: RunLog, depth: int = 99, max_branches: int = 8) -> Tree:
    """The run as a rich Tree; ``depth`` limits nesting, ``max_branches`` per step."""
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
    title.append(f"  {len(steps)} steps, {branches} branches", "dim")
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
