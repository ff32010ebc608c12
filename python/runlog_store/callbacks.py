"""Progress of long operations, reported to whoever watches (fsspec's ``callback=``).

The library never draws: a catalog transfer, a verification or a listing of many runs calls the
:class:`Callback` it is given, and the default does nothing. An application draws what it is
told (the ``runlog`` command line draws rich progress bars on a terminal, see
``runlog_store.cli.progress``); a pipeline may log it, or pass nothing.

An operation may have several phases (a copy downloads, then uploads, then re-hashes): each is
one ``begin``, any number of ``advance`` calls, and one ``end``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, TypeVar

Unit = Literal["bytes", "items"]
T = TypeVar("T")
R = TypeVar("R")


class Callback:
    """Told what a long operation is doing; subclass it to show or record progress.

    ``begin(description, total, unit)`` starts a phase of ``total`` bytes (a transfer or a
    hash) or items (runs read, files checked); ``advance(amount)`` reports work done since the
    last call; ``end()`` closes the phase, also when it failed.
    """

    def begin(self, description: str, total: int, unit: Unit = "bytes") -> None:
        return None

    def advance(self, amount: int) -> None:
        return None

    def end(self) -> None:
        return None

    @contextmanager
    def phase(self, description: str, total: int, unit: Unit = "bytes") -> Iterator[Callback]:
        """``begin`` ... ``end`` around a block, ``end`` also when the block raises."""
        self.begin(description, total, unit)
        try:
            yield self
        finally:
            self.end()


NO_PROGRESS = Callback()
"""The default: reports go nowhere."""


class RecordingCallback(Callback):
    """Keeps every report: for tests, and for callers that want totals afterwards."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, int, Unit]] = []
        self.done: list[int] = []
        self.open = False

    def begin(self, description: str, total: int, unit: Unit = "bytes") -> None:
        self.phases.append((description, total, unit))
        self.done.append(0)
        self.open = True

    def advance(self, amount: int) -> None:
        self.done[-1] += amount

    def end(self) -> None:
        self.open = False


# Work is handed to the Rust core in batches this big, so progress moves between them while
# each batch still keeps every core busy (a batch hashes or copies its files in parallel).
BATCH_FILES = 256
BATCH_BYTES = 512 << 20


def batches(sizes: Sequence[int]) -> Iterator[range]:
    """Consecutive index ranges of at most BATCH_FILES files or about BATCH_BYTES bytes."""
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and (index - start >= BATCH_FILES or total + size > BATCH_BYTES):
            yield range(start, index)
            start, total = index, 0
        total += size
    if start < len(sizes):
        yield range(start, len(sizes))


def in_batches(
    description: str,
    items: Sequence[T],
    sizes: Sequence[int],
    work: Callable[[Sequence[T]], list[R]],
    callback: Callback = NO_PROGRESS,
) -> list[R]:
    """Run ``work`` over ``items`` batch by batch, reporting the bytes done to ``callback``."""
    results: list[R] = []
    with callback.phase(description, sum(sizes), "bytes"):
        for span in batches(sizes):
            results.extend(work(items[span.start : span.stop]))
            callback.advance(sum(sizes[span.start : span.stop]))
    return results


__all__ = ["NO_PROGRESS", "Callback", "RecordingCallback", "Unit", "batches", "in_batches"]
