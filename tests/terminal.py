"""Running a command with its stderr on a pseudo-terminal, where progress bars are drawn."""

from __future__ import annotations

import os
import subprocess


def run_with_terminal_stderr(args: list[str], timeout: float = 120) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, everything drawn on the terminal). The terminal is read while the
    command runs: a full pseudo-terminal buffer would otherwise block it."""
    leader, follower = os.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    drawn = read_terminal(leader)
    assert proc.stdout is not None
    out = proc.stdout.read()
    return proc.wait(timeout), out, drawn


def read_terminal(leader: int) -> bytes:
    """Everything drawn on a pseudo-terminal until the command closes it (then ``leader`` is
    closed too)."""
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the command closed the terminal's last handle
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    return drawn
