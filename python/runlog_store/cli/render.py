"""Run logs drawn for people: a tree of steps and branches with status, timings and errors.

Every string read from a run, a store or a folder reaches the terminal through ``printable``:
anyone who can write a run log can put bytes in it that a terminal would obey.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from rich.text import Text

if TYPE_CHECKING:
    from rich.tree import Tree

    from runlog_store.models import BranchLog, Parameter, RunLog, StepLog

# runnable's names of the statuses a step ends with (runlog_store.models' SUCCESS and FAIL).
# Spelled here rather than imported: every command imports this module for ``printable``, and
# the models are pydantic's to build, which ``runlog --help`` should not wait for.
SUCCESS = "SUCCESS"
FAIL = "FAIL"

# What a terminal acts on instead of showing. C0 controls, DEL and C1 controls (U+009B, the
# 8-bit CSI, among them) start escape sequences: a clipboard write (OSC 52), a cleared screen,
# a window title. Bidi embeddings, overrides, isolates and marks reorder the text around them,
# so that what a reader sees is not what is stored. The Unicode line and paragraph separators
# break lines some terminals do not. Surrogates are the bytes of a file name that is not UTF-8
# (as os.fsdecode keeps them), which no terminal encoding can write.
_UNPRINTABLE = re.compile(
    r"\r\n|[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
    r"\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode: shown as that byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` as a terminal shows it without acting on any of it: every control character,
    bidi control and undecodable byte written out as ``ls -b`` and systemd do (``\\x1b``,
    ``\\u009b``, ``\\u202e``, ``\\n``); everything else, accents, CJK and emoji included, as
    it is. ``lines`` keeps line ends (``\\n``, ``\\r\\n``), for text read line by line (an error
    message, a traceback); a lone ``\\r``, which goes back over a line, is always shown.

    A backslash is not doubled: the text is for people (a Windows path in an error message
    stays readable), and the exact string is what ``--json`` prints."""

    def escaped(match: re.Match[str]) -> str:
        found = match.group()
        if found in ("\n", "\r\n"):
            return "\n" if lines else "".join(_visible(char) for char in found)
        return _visible(found)

    return _UNPRINTABLE.sub(escaped, text)


STATUS_STYLE = {SUCCESS: "green", FAIL: "bold red", "PROCESSING": "yellow", "CREATED": "dim"}
_STATUS_MARK = {SUCCESS: "✔", FAIL: "✘", "PROCESSING": "…", "CREATED": "·"}


def step_window(step: StepLog) -> tuple[datetime, datetime] | None:
    """First start and last end of a step, its branches' steps included."""
    from runlog_store.ops.runs import parse_time

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


def format_bytes(size: int) -> str:
    """A size as people read it: ``812 B``, ``12.3 kB``, ``4.1 MB`` (powers of 1000, as
    ``du --si``)."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 999.95:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"


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
    return Text(f"{_STATUS_MARK.get(status, '?')} {printable(status)}", style=style)


def _params(params: dict[str, Parameter], limit: int = 4, width: int = 40) -> str:
    shown = []
    for name, param in list(params.items())[:limit]:
        text = printable(str(param.description))
        shown.append(f"{printable(name)}={text if len(text) <= width else text[: width - 1] + '…'}")
    if len(params) > limit:
        shown.append(f"+{len(params) - limit} more")
    return " ".join(shown)


def _step_label(step: StepLog, show_name: str) -> Text:
    label = Text.assemble(
        _status(step.status), " ", (printable(show_name), "bold"), f"  {printable(step.step_type)}"
    )
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
            message = printable(attempt.message.strip(), lines=True)
            child.add(Text(f"attempt {attempt.attempt_number} failed: {message}", "red"))
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
        stage, name, data_hash = (printable(s) for s in (entry.stage, entry.name, entry.data_hash))
        child.add(Text(f"catalog {stage}: {name}  {data_hash[:12]}", "blue"))
    if len(drawn) < len(entries):
        stages = Counter(entry.stage for entry in entries[len(drawn) :])
        summary = ", ".join(f"{n} {printable(stage)}" for stage, n in stages.most_common())
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
        summary = ", ".join(f"{n} {printable(status)}" for status, n in counts.most_common())
        more = counted(len(hidden), "more branch", "more branches")
        child.add(Text(f"… {more} ({summary})", "dim"))


def _add_branch(node: Tree, branch: BranchLog, depth: int, max_branches: int) -> None:
    label = Text.assemble(
        _status(branch.status), " ", (printable(branch.internal_name), "bold blue")
    )
    if branch.parameters:
        label.append(f"  {_params(branch.parameters)}", "dim")
    child = node.add(label)
    for step in branch.steps.values():
        _add_step(child, step, depth, max_branches)


def run_tree(run_log: RunLog, depth: int = 99, max_branches: int = 8) -> Tree:
    """The run as a rich Tree; ``depth`` limits nesting, ``max_branches`` the branches and the
    catalog entries drawn per step."""
    from rich.tree import Tree

    from runlog_store.ops.runs import describe_code_identities

    steps = list(run_log.iter_steps())
    branches = sum(len(s.branches) for s in steps)
    title = Text.assemble(
        ("Run ", "bold"), (printable(run_log.run_id), "bold cyan"), "  ", _status(run_log.status)
    )
    if run_log.tag:
        title.append(f"  tag={printable(run_log.tag)}")
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
        tree.add(Text(f"code: {printable(', '.join(identities))}", "dim"))
    if run_log.parameters:
        tree.add(Text(f"parameters: {_params(run_log.parameters, 6)}", "dim"))
    for step in run_log.steps.values():
        _add_step(tree, step, depth, max_branches)
    if run_log.job is not None:
        tree.add(Text.assemble("job ", _status(run_log.job.status)))
    return tree
