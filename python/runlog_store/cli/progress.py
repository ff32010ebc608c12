"""Progress bars on a terminal: the command line's :class:`~runlog_store.callbacks.Callback`.

The library reports progress to the callback it is given and never draws; this one draws a rich
bar on stderr, and only when a person watches (stderr is a terminal) and the work is big enough
to watch, so piped output and ``--json`` stay clean.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from runlog_store.callbacks import Callback, Unit
from runlog_store.cli.render import printable

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn, TaskID

# Below these a phase ends before a bar would be read: files and runs counted, bytes moved.
MIN_ITEMS = 20
MIN_BYTES = 256 << 20


def on_terminal() -> bool:
    """Progress goes to stderr, and only when a person watches it."""
    return Console(file=sys.stderr).is_terminal


class TerminalProgress(Callback):
    """Draws each phase as a bar on stderr (a transfer bar with speed and time left for bytes,
    a count for items), when on a terminal and the phase is big enough."""

    def __init__(self, *, enabled: bool | None = None) -> None:
        self._enabled = on_terminal() if enabled is None else enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def begin(self, description: str, total: int, unit: Unit = "bytes") -> None:
        self.end()
        if not self._enabled or total < (MIN_BYTES if unit == "bytes" else MIN_ITEMS):
            return
        # Imported for a bar drawn: every search takes this callback, few draw a bar.
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns: tuple[ProgressColumn, ...] = (
            (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
            if unit == "items"
            else (
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
        )
        console = Console(file=sys.stderr, emoji=False)
        self._progress = Progress(*columns, console=console, transient=True)
        self._progress.start()
        # A description may name a run ("export catalog of RUN_ID"): drawn as it is, like any
        # string from a run (the bar's text column reads markup).
        self._task = self._progress.add_task(escape(printable(description)), total=total)

    def advance(self, amount: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None


__all__ = ["TerminalProgress", "on_terminal"]
