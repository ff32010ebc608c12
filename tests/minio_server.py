"""A real MinIO server for the object-storage tests and benchmarks, run as a child process.

The object stores are tested against the real server, never a mock: a mock would agree with
whatever the store assumes about S3 (conditional writes, listing, errors), which is exactly
what the tests have to check. The binary is built once by scripts/minio.sh; this module only
runs it. Standard library only, so the fixtures work before any third-party client is imported.

Each server gets its own data directory, ports and credentials, and can be stopped, killed
and started again on the same port and data directory: a restarted server has the same
objects, which is how the tests check that what a store wrote is durable, not cached.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
MINIO_SCRIPT = ROOT / "scripts" / "minio.sh"

TEST_ACCESS_KEY = "runlog-test-user"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_TAIL_BYTES = 4000


class MinioUnavailableError(RuntimeError):
    """The MinIO binary could not be built or found (no Go toolchain, a failed build)."""


class MinioServerError(RuntimeError):
    """The server did not come up (it exited, or did not answer in time); carries its log tail."""


def required_minio_binary() -> Path:
    """The binary for a test session: without it the object-storage tests skip on a developer
    machine but fail in CI (CI=true), where every integration test must run."""
    import pytest

    try:
        return minio_binary()
    except MinioUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"MinIO is required in CI: {exc}")
        pytest.skip(f"no MinIO server binary: {exc}")


def minio_binary(script: Path = MINIO_SCRIPT, timeout: float = 3600.0) -> Path:
    """The MinIO binary's path, from scripts/minio.sh (which builds it on first use).

    The script is the single place that knows the pinned version and cache location, so the
    fixtures ask it rather than guessing a path. A first build takes minutes; later calls only
    check the cache. Raises MinioUnavailableError with the script's own explanation.
    """
    try:
        result = subprocess.run(
            ["bash", str(script)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MinioUnavailableError(f"{script} could not be run: {exc}") from exc
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip())[-LOG_TAIL_BYTES:]
        raise MinioUnavailableError(
            f"{script.name} failed with exit code {result.returncode}: {detail}"
        )
    lines = result.stdout.strip().splitlines()
    binary = Path(lines[-1]) if lines else Path()
    if not lines or not os.access(binary, os.X_OK):
        raise MinioUnavailableError(f"{script.name} printed no executable path: {result.stdout!r}")
    return binary


def free_port(exclude: tuple[int, ...] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (a bind test, not a connect).

    This has to be checked before starting: MinIO listens with SO_REUSEPORT, so a second
    server on a taken port does not fail, it starts and the kernel splits the connections
    between the two, and the health check passes on whichever answers. SO_REUSEADDR here so
    that connections of a just-stopped server in TIME_WAIT do not count as in use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL the server if the test process dies.

    Without it a test run killed hard (CI timeout, SIGKILL) leaves orphaned servers holding
    ports and temp directories. Linux-only (prctl); elsewhere a no-op.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class MinioServer:
    """One MinIO server process on 127.0.0.1 with its own data directory and credentials.

    ``MinioServer(binary, base_dir)`` picks two free ports and fresh credentials; ``start()``
    runs it (blocking until it serves requests), ``stop()``/``kill()`` end it, and ``start()``
    again reuses the same port and data directory. Usable as a context manager.
    """

    def __init__(
        self,
        binary: Path | str,
        base_dir: Path | str,
        *,
        access_key: str = TEST_ACCESS_KEY,
        secret_key: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.binary = Path(binary)
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.certs_dir = self.base_dir / "certs"
        self.log_path = self.base_dir / "minio.log"
        self.access_key = access_key
        # 32 characters; MinIO wants at least 8, the tests want it unguessable.
        self.secret_key = secret_key if secret_key is not None else secrets.token_urlsafe(24)
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.console_port = free_port(exclude=(self.port,))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _env(self) -> dict[str, str]:
        """The parent's environment without any MINIO_* settings, plus the test ones.

        A developer's own MINIO_VOLUMES, MINIO_ROOT_USER, etc. must not leak into the test
        server. MINIO_CI_CD lifts the checks meant for production drives (a data directory on
        the root disk); MINIO_UPDATE=off keeps the server off the network.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINIO_")}
        env.update(
            MINIO_ROOT_USER=self.access_key,
            MINIO_ROOT_PASSWORD=self.secret_key,
            MINIO_CI_CD="on",
            MINIO_UPDATE="off",
            MINIO_BROWSER_REDIRECT="off",
        )
        return env

    def start(self) -> None:
        """Run the server (same port and data directory as before) and wait until it serves.

        Raises MinioServerError if a port is taken, or, with the tail of the server's log, if it
        exits or does not answer within ``startup_timeout`` seconds (and then kills it).
        """
        if self.is_running():
            return
        for port in (self.port, self.console_port):
            if port_in_use(port):
                raise MinioServerError(
                    f"port {port} on 127.0.0.1 is already in use (another MinIO still running "
                    f"on it?); not starting a second server that would share it"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.binary),
            "server",
            str(self.data_dir),
            "--address",
            self.host_port,
            "--console-address",
            f"127.0.0.1:{self.console_port}",
            # Otherwise MinIO creates ~/.minio/certs in the developer's home.
            "--certs-dir",
            str(self.certs_dir),
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== {time.strftime('%H:%M:%S')} {' '.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _get(self, path: str) -> tuple[int, dict[str, str]]:
        """Status and headers of GET path; (0, {}) when nothing answers yet."""
        try:
            with urllib.request.urlopen(self.endpoint + path, timeout=2) as response:
                return int(response.status), {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as exc:
            return int(exc.code), {k.lower(): v for k, v in exc.headers.items()}
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return 0, {}

    def _wait_ready(self) -> None:
        """Poll the health endpoints until the server really serves S3 requests.

        /minio/health/live answers 200 as soon as the HTTP listener is up, even before the
        object layer exists (it then sets ``x-minio-server-status: offline``); requests made in
        that window fail with 503 XMinioServerNotInitialized. So: live must answer 200 without
        that header, then /minio/health/cluster (object layer, bucket metadata and IAM all
        initialised) must answer 200.
        """
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        live = False
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise MinioServerError(
                    f"the MinIO server exited with code {code} during startup "
                    f"({self.endpoint}, data {self.data_dir}); log tail:\n{self.log_tail()}"
                )
            if not live:
                status, headers = self._get("/minio/health/live")
                live = status == 200 and headers.get("x-minio-server-status") != "offline"
            if live and self._get("/minio/health/cluster")[0] == 200:
                return
            time.sleep(0.05)
        raise MinioServerError(
            f"the MinIO server did not become ready in {self.startup_timeout:.0f}s "
            f"({self.endpoint}, data {self.data_dir}); log tail:\n{self.log_tail()}"
        )

    def log_tail(self, size: int = LOG_TAIL_BYTES) -> str:
        """The end of the server's log (both runs' output, appended), for error messages."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - size))
                return log.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(no log at {self.log_path}: {exc})"

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful stop: SIGTERM, then SIGKILL if it has not exited after ``timeout`` s."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def kill(self) -> None:
        """Crash the server: SIGKILL, no chance to flush anything (data written stays)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        self._process = None

    def restart(self) -> None:
        """Graceful stop, then start on the same port and data directory."""
        self.stop()
        self.start()

    def __enter__(self) -> MinioServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else "stopped"
        return f"MinioServer({self.endpoint}, {state}, data={self.data_dir})"
