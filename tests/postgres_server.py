"""A private PostgreSQL cluster for the postgres store's tests, started and stopped by them.

The store is tested against a real server, never a mock, for the same reason as the object
stores against MinIO (tests/minio_server.py): row locks, transactions and constraint errors are
what the store relies on. scripts/postgres.sh installs Debian's server and says where its
binaries are; this module runs ``initdb`` in a fresh temp folder and ``pg_ctl`` on a free port,
the unix socket in that folder too, so nothing is shared with a cluster the machine may run.
The server refuses to run as root: when the tests do (CI, this machine), the cluster belongs to
the ``postgres`` OS user and every server command runs as that user (``runuser``).

Durability settings are the production ones (``fsync``, ``synchronous_commit`` on): what a test
reads back after a writer's SIGKILL must be what a real deployment would keep. Clients connect
over TCP with a password (SCRAM), so the store's handling of its secret is exercised for real.
Standard library only.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from .minio_server import free_port

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_SCRIPT = ROOT / "scripts" / "postgres.sh"
SERVER_USER = "postgres"  # the OS user owning the cluster when the tests run as root
SUPERUSER = "runlog_test"
DATABASE = "runlog_test"
STARTUP_TIMEOUT = 60.0
LOG_TAIL_BYTES = 4000


class PostgresUnavailableError(RuntimeError):
    """The server binaries could not be installed or found."""


class PostgresServerError(RuntimeError):
    """The cluster could not be made or started; carries the command's output or log tail."""


def required_postgres_bin() -> Path:
    """The server's bin folder for a test session: without it the PostgreSQL tests skip on a
    developer machine but fail in CI (CI=true), where every integration test must run."""
    import pytest

    try:
        return postgres_bin()
    except PostgresUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")


@contextlib.contextmanager
def private_server() -> Iterator[PostgresServer]:
    """A started private cluster, removed after: the session's, or a module's own (one its
    tests may crash)."""
    server = PostgresServer(required_postgres_bin())
    try:
        server.start()
        yield server
    finally:
        server.remove()


def postgres_bin(script: Path = POSTGRES_SCRIPT, timeout: float = 1800.0) -> Path:
    """The folder of initdb and pg_ctl, from scripts/postgres.sh (which installs them)."""
    try:
        result = subprocess.run(
            ["bash", str(script)], cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresUnavailableError(f"{script} could not be run: {exc}") from exc
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip())[-LOG_TAIL_BYTES:]
        raise PostgresUnavailableError(
            f"{script.name} failed with exit code {result.returncode}: {detail}"
        )
    lines = result.stdout.strip().splitlines()
    folder = Path(lines[-1]) if lines else Path()
    if not lines or not os.access(folder / "pg_ctl", os.X_OK):
        raise PostgresUnavailableError(f"{script.name} printed no bin folder: {result.stdout!r}")
    return folder


class PostgresServer:
    """One private cluster: ``start()`` makes it (first time) and runs it, ``stop()`` ends it
    (fast shutdown), ``kill()`` crashes it; ``start()`` again reuses its data folder and port.
    ``remove()`` stops it and deletes its folder (also at the exit of the process)."""

    def __init__(self, bin_dir: Path | str) -> None:
        self.bin_dir = Path(bin_dir)
        # Not under pytest's tmp folder: that one is private to root, and the server runs as
        # another user.
        self.base_dir = Path(tempfile.mkdtemp(prefix="runlog-pg-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "socket"
        self.log_path = self.base_dir / "server.log"
        self.password = secrets.token_urlsafe(24)
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        self._initialized = False
        self._running = False
        atexit.register(self.remove)

    # --- what a store's config needs --------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def user(self) -> str:
        return SUPERUSER

    @property
    def dbname(self) -> str:
        return DATABASE

    def url(self, with_password: bool = False) -> str:
        secret = f":{self.password}" if with_password else ""
        return f"postgresql://{self.user}{secret}@{self.host}:{self.port}/{self.dbname}"

    # --- running it -------------------------------------------------------------------------

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / command[0]), *command[1:]]
        if self._as_root:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        result = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=self.base_dir
        )
        if check and result.returncode != 0:
            raise PostgresServerError(
                f"{' '.join(command[:2])} failed with exit code {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()[-LOG_TAIL_BYTES:]}\n"
                f"server log tail:\n{self.log_tail()}"
            )
        return result

    def _initdb(self) -> None:
        self.socket_dir.mkdir()
        password_file = self.base_dir / "password"
        password_file.write_text(self.password + "\n")
        if self._as_root:
            owner = pwd.getpwnam(SERVER_USER)
            for path in (self.base_dir, self.socket_dir, password_file):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        password_file.chmod(0o600)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            f"--pwfile={password_file}",
            "--auth-local=trust",  # the socket in our own folder: the fixture's own commands
            "--auth-host=scram-sha-256",  # TCP, the stores' way in: the password is checked
            "-E",
            "UTF8",
            "--no-instructions",
        )
        password_file.unlink()
        self._initialized = True

    def start(self) -> None:
        if self._running:
            return
        if not self._initialized:
            self._initdb()
        options = " ".join(
            [
                f"-c port={self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.socket_dir}",
                "-c fsync=on",
                "-c synchronous_commit=on",
                "-c max_connections=200",
                "-c shared_buffers=32MB",
            ]
        )
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            str(int(STARTUP_TIMEOUT)),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
        )
        self._running = True
        if not self._database_exists():
            self._psql(f"CREATE DATABASE {DATABASE}")

    def _psql(self, sql: str, database: str = "postgres") -> str:
        result = self._run(
            "psql",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        )
        return result.stdout.strip()

    def _database_exists(self) -> bool:
        found = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        return found == "1"

    def sql(self, sql: str) -> str:
        """Run SQL in the test database as the superuser (behind the store's back)."""
        return self._psql(sql, DATABASE)

    def stop(self) -> None:
        """A fast shutdown: sessions ended, everything committed kept."""
        if self._running:
            self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data_dir), check=False)
            self._running = False

    def kill(self) -> None:
        """Crash the server (SIGKILL of the postmaster): the next start recovers from its WAL."""
        pid_file = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        self._running = False

    def remove(self) -> None:
        """Stop the server and delete its folder (idempotent: also run at exit)."""
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_tail(self, size: int = LOG_TAIL_BYTES) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - size))
                return log.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(no log at {self.log_path}: {exc})"

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"PostgresServer({self.host}:{self.port}, {state}, data={self.data_dir})"


def stop_on_sigterm() -> None:
    """Make a SIGTERM of the test process end it through its exit handlers (which stop the
    clusters: a daemonised server would otherwise outlive pytest), not at once."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # someone else handles it already

    def exit_on_term(signum: int, frame: FrameType | None) -> None:
        sys.exit(128 + signum)

    with contextlib.suppress(ValueError):  # not the main thread: left as it is
        signal.signal(signal.SIGTERM, exit_on_term)
