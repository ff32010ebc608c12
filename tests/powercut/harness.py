"""The power-cut harness: mounts powerfs (powerfs.py), runs a writer process on it, cuts the
power at a random moment while SIGKILLing the writer at the same instant, and hands back what
the writer had been told succeeded, for the tests to check against what the disk kept.

A cut is: ``freeze`` (from this instant every filesystem call fails, as with the power off),
SIGKILL of the writer, then ``cut`` (the backing folder becomes what the disk held, and the
power comes back). The mount stays: the kernel keeps no cache of it (every timeout is 0), so
the next reader sees exactly what a machine booting after the cut would.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUSE_SCRIPT = ROOT / "scripts" / "fuse.sh"
POWERFS = Path(__file__).with_name("powerfs.py")
MOUNT_TIMEOUT = 20.0
LOG_TAIL = 4000

# Cuts per configuration (100 in CI; raise it for a soak run, e.g. RUNLOG_POWERCUTS=2000).
CUTS = int(os.environ.get("RUNLOG_POWERCUTS", "100"))
SEED = os.environ.get("RUNLOG_POWERCUT_SEED", "1")


@functools.cache
def fuse_problem() -> str | None:
    """Why the power-cut tests cannot run here, or None when they can (asked once)."""
    if os.geteuid() != 0:
        return "the power-cut tests mount a FUSE filesystem and must run as root"
    try:
        done = subprocess.run(
            ["bash", str(FUSE_SCRIPT)], capture_output=True, text=True, timeout=1800, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{FUSE_SCRIPT} did not run: {exc}"
    if done.returncode != 0:
        return f"{FUSE_SCRIPT.name} exited {done.returncode}: {done.stderr.strip()[-LOG_TAIL:]}"
    try:
        import mfusepy  # noqa: F401  (loads libfuse3: this is the real check)
    except (ImportError, OSError) as exc:
        return f"the FUSE binding mfusepy does not load: {exc} (run scripts/install.sh)"
    return None


def require_fuse() -> None:
    """Skip on a developer machine without FUSE; fail in CI, where no test may skip."""
    problem = fuse_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the power-cut tests are required in CI: {problem}")
    pytest.skip(f"no FUSE for the power-cut tests: {problem}")


class PowerCutMount:
    """powerfs mounted at ``<base>/mnt`` over the backing folder ``<base>/disk``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.disk = base / "disk"
        self.state = base / "state"
        self.mnt = base / "mnt"
        self.log = base / "powerfs.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._replies: Any = None

    def start(self) -> PowerCutMount:
        for folder in (self.disk, self.state, self.mnt):
            folder.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, str(POWERFS), str(self.disk), str(self.state), str(self.mnt)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"powerfs exited {self._process.returncode}: {self.log_tail()}")
            if os.path.ismount(self.mnt) and (self.state / "control.sock").exists():
                with contextlib.suppress(OSError):
                    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    control.connect(str(self.state / "control.sock"))
                    self._control = control
                    self._replies = control.makefile("rwb")
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"powerfs did not mount in {MOUNT_TIMEOUT}s: {self.log_tail()}")
            time.sleep(0.02)
        return self

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-LOG_TAIL:]
        except OSError:
            return ""

    def request(self, **request: Any) -> dict[str, Any]:
        assert self._replies is not None, "not mounted"
        self._replies.write(json.dumps(request).encode() + b"\n")
        self._replies.flush()
        line = self._replies.readline()
        if not line:
            raise RuntimeError(f"powerfs closed its control socket: {self.log_tail()}")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"powerfs refused {request}: {reply.get('error')}")
        return reply

    def freeze(self) -> None:
        self.request(op="freeze")

    def cut(self, writeback: float = 0.0, seed: object = 0) -> dict[str, Any]:
        return self.request(op="cut", writeback=writeback, seed=str(seed))

    def power_cut(self, writeback: float = 0.0, seed: object = 0) -> dict[str, Any]:
        """A cut with no writer running: freeze and cut at once."""
        self.freeze()
        return self.cut(writeback, seed)

    def sync(self) -> None:
        self.request(op="sync")

    def stats(self) -> dict[str, Any]:
        return self.request(op="stats")

    def stop(self) -> None:
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._replies.close()
                self._control.close()
            self._control = None
        if os.path.ismount(self.mnt):
            done = subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __enter__(self) -> PowerCutMount:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- the writer -----------------------------------------------------------------------------

Ack = Callable[[str], None]
Workload = Callable[[Ack], None]


def _run_writer(workload: Workload, ack_fd: int) -> None:
    """The child: run the workload, saying on the pipe what each call returned; an error (the
    power went off under it) is said too, then the child waits for its SIGKILL."""

    def ack(line: str) -> None:
        os.write(ack_fd, line.encode() + b"\n")

    try:
        workload(ack)
    except BaseException as exc:
        first_line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        ack(f"ERROR {time.monotonic_ns()} {first_line}")
        if os.environ.get("RUNLOG_POWERCUT_TRACE"):
            traceback.print_exc()
    signal.pause()


@dataclass
class Cut:
    """One cut: the lines the writer acknowledged, the errors it met before the power went
    off (every call fails after that: those are expected), and what powerfs dropped."""

    acks: list[str]
    errors_before_cut: list[str]
    dropped: dict[str, Any]


# How long a cut waits for the acknowledgements it was asked to let through first: a writer on
# a loaded machine takes tens of milliseconds per call, so this long means it is stuck.
FIRST_ACKS_TIMEOUT = 60.0


def _read_acks_until(read_end: int, prefix: str, count: int, mount: PowerCutMount) -> bytes:
    """Read the writer's lines until ``count`` of them start with ``prefix``; what was read."""
    data = b""
    deadline = time.monotonic() + FIRST_ACKS_TIMEOUT
    while data.count(b"\n" + prefix.encode()) + data.startswith(prefix.encode()) < count:
        if b"\nERROR " in b"\n" + data:
            break  # the writer failed: the caller reports its error
        # Waited for with a bound: a writer stuck without a word would block a bare read.
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([read_end], [], [], remaining)[0]:
            raise AssertionError(
                f"the writer acknowledged fewer than {count} '{prefix}' lines in "
                f"{FIRST_ACKS_TIMEOUT:.0f} s: {data[-500:]!r}\n{mount.log_tail()}"
            )
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        data += chunk
    return data


def cut_under_writer(
    mount: PowerCutMount,
    workload: Workload,
    rng: random.Random,
    *,
    max_delay: float = 0.08,
    after_acks: tuple[str, int] | None = None,
) -> Cut:
    """Start the writer, let it work for a random moment, then cut the power and kill it at
    the same instant. Half the cuts drop everything unsynced; the others let a random part of
    it reach the disk first.

    ``after_acks=(prefix, n)`` starts the random moment only once the writer has acknowledged
    ``n`` lines starting with ``prefix``: a test that needs some work done before every cut
    (a cache recorded, to be checked after it) gets it however slow the machine is, where a
    fixed delay would cut a slow writer before its first call returned."""
    # fork: the writer starts in milliseconds (a fresh interpreter would cost 100 times the
    # cut). The child only writes, and the parent holds no lock a child could inherit held.
    context = multiprocessing.get_context("fork")
    read_end, write_end = os.pipe()
    child = context.Process(target=_run_writer, args=(workload, write_end), daemon=True)
    child.start()
    os.close(write_end)
    data = b""
    if after_acks is not None:
        data = _read_acks_until(read_end, after_acks[0], after_acks[1], mount)
    time.sleep(rng.uniform(0.002, max_delay))
    frozen_ns = time.monotonic_ns()  # errors met before this cannot be the cut's doing
    mount.freeze()
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    writeback = 0.0 if rng.random() < 0.5 else rng.random()
    dropped = mount.cut(writeback, rng.random())
    lines = data.decode().splitlines()
    errors = [line.split(" ", 2)[1:] for line in lines if line.startswith("ERROR ")]
    return Cut(
        acks=[line for line in lines if not line.startswith("ERROR ")],
        errors_before_cut=[message for at, message in errors if int(at) < frozen_ns],
        dropped={"writeback": round(writeback, 3), **dropped},
    )


@dataclass
class Tally:
    """Acknowledged writes, and those a cut lost, over a whole configuration."""

    name: str
    cuts: int = 0
    acknowledged: int = 0
    lost: int = 0
    runs_lost: int = 0
    cuts_losing: int = 0
    problems: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def record(self, acknowledged: int, lost: int, problems: list[str]) -> None:
        self.cuts += 1
        self.acknowledged += acknowledged
        self.lost += lost
        if lost:
            self.cuts_losing += 1
        if len(self.problems) < 12:
            self.problems.extend(problems[: 12 - len(self.problems)])

    def summary(self) -> str:
        seconds = time.monotonic() - self.started
        return (
            f"{self.name}: {self.cuts} power cuts, {self.acknowledged} acknowledged writes, "
            f"{self.lost} lost in {self.cuts_losing} cuts ({self.runs_lost} whole runs lost), "
            f"{seconds:.1f}s"
        )

    def report(self) -> None:
        print(f"\n{self.summary()}")
        for problem in self.problems[:5]:
            print(f"  e.g. {problem}")


@contextlib.contextmanager
def mounted(base: Path) -> Iterator[PowerCutMount]:
    mount = PowerCutMount(base)
    mount.start()
    try:
        yield mount
    finally:
        mount.stop()
