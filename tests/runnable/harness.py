"""Running real runnable 0.50 pipelines on runlog-store, each in its own folder and process.

A :class:`Project` is a temporary folder holding the example pipeline (examples/) and the test
pipelines (tests/runnable/pipelines/), the configuration files the test writes, and whatever
the runs leave (log folder, catalog, compute data). Pipelines run as subprocesses of the test
(``python pipeline.py`` for the SDK, ``runnable execute`` for YAML) in their own process group,
so a test can kill the whole pipeline, Pool workers included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLES = ROOT / "examples"
PIPELINES = Path(__file__).resolve().parent / "pipelines"
# A pipeline of 64 branches takes 5-15 s here; this only stops a hung one.
PIPELINE_TIMEOUT = 300.0


@dataclass
class Finished:
    """A pipeline process that ended: its exit status and everything it printed."""

    returncode: int
    output: str
    seconds: float

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


class Running:
    """A pipeline process still running, in its own process group."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path, started: float) -> None:
        self.process = process
        self.log = log
        self.started = started

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the pipeline and every process it started (its Pool workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def wait(self, timeout: float = PIPELINE_TIMEOUT) -> Finished:
        try:
            returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"the pipeline did not end in {timeout:.0f} s; its output ends with:\n"
                + "\n".join(self.output().splitlines()[-60:])
            ) from None
        # Pool workers end with their parent; wait for stragglers of the group.
        with_group_gone(self.process.pid)
        return Finished(returncode, self.output(), time.monotonic() - self.started)


def with_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Wait until no process of group ``pgid`` is left (SIGKILL them after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                return
        time.sleep(0.05)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


class Project:
    """A folder to run pipelines in (the compute folder, the log folder and the catalog)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for source in (EXAMPLES, PIPELINES):
            for path in source.glob("*"):
                if path.is_file() and path.suffix in (".py", ".yaml"):
                    shutil.copy(path, folder / path.name)

    @property
    def log_folder(self) -> Path:
        return self.folder / ".run_log_store"

    @property
    def catalog_folder(self) -> Path:
        return self.folder / ".catalog"

    def config(
        self,
        name: str,
        store_type: str,
        store_config: dict[str, Any] | None = None,
        catalog_type: str = "runlog-file-system",
        catalog_config: dict[str, Any] | None = None,
        parallel: bool = True,
    ) -> Path:
        """Write a runnable configuration file; local paths are absolute so that the test
        process reads the same folders as the pipeline."""
        if store_config is None:
            store_config = {"log_folder": str(self.log_folder)}
        if catalog_config is None:
            catalog_config = {"catalog_location": str(self.catalog_folder)}
        document = {
            "pipeline-executor": {"type": "local", "config": {"enable_parallel": parallel}},
            "run-log-store": {"type": store_type, "config": store_config},
            "catalog": {"type": catalog_type, "config": catalog_config},
        }
        path = self.folder / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def _environment(self, config: Path, parameters: dict[str, Any]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNABLE_")}
        env["RUNNABLE_CONFIGURATION_FILE"] = str(config)
        env["RUNNABLE_PARAMETERS_FILE"] = str(self.folder / "parameters.yaml")
        env["PYTHONUNBUFFERED"] = "1"
        for name, value in parameters.items():
            env[f"RUNNABLE_PRM_{name}"] = json.dumps(value)
        return env

    def start(
        self,
        argv: list[str],
        config: Path,
        run_id: str,
        parameters: dict[str, Any] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Running:
        env = self._environment(config, parameters or {})
        env["RUNNABLE_RUN_ID"] = run_id
        env.update(extra_env or {})
        log = self.folder / f"{run_id}.{len(list(self.folder.glob(f'{run_id}.*.out')))}.out"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                cwd=self.folder,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Running(process, log, time.monotonic())

    def run_sdk(
        self,
        module: str,
        config: Path,
        run_id: str,
        parameters: dict[str, Any] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Finished:
        """Run a pipeline written with runnable's Python SDK (``python <module>.py``)."""
        argv = [sys.executable, f"{module}.py"]
        return self.start(argv, config, run_id, parameters, extra_env).wait()

    def run_yaml(
        self,
        pipeline: str,
        config: Path,
        run_id: str,
        parameters: dict[str, Any] | None = None,
    ) -> Finished:
        """Run a YAML pipeline with runnable's command line (``runnable execute``)."""
        argv = [str(BIN / "runnable"), "execute", pipeline, "--config", str(config), run_id]
        return self.start(argv, config, run_id, parameters).wait()

    def retry(self, config: Path, run_id: str) -> Finished:
        """runnable's retry of a failed run (``runnable retry``, RUNNABLE_RETRY_RUN_ID)."""
        argv = [str(BIN / "runnable"), "retry", run_id, "--config", str(config)]
        return self.start(argv, config, run_id).wait()

    def runlog(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The runlog command line, in this folder, with no RUNNABLE_* variables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNABLE_")}
        return subprocess.run(
            [str(BIN / "runlog"), *args],
            cwd=self.folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


def succeeded(finished: Finished) -> None:
    assert finished.returncode == 0, (
        f"the pipeline failed (exit {finished.returncode}); its output ends with:\n"
        + finished.tail()
    )


def walk(run: Any) -> Iterator[tuple[str, str, Any]]:
    """(kind, internal name, log) of every step and branch of a run log, at every depth,
    for runnable's models and ours alike."""
    stack = [("step", step) for step in reversed(list(run.steps.values()))]
    while stack:
        kind, node = stack.pop()
        yield kind, node.internal_name, node
        if kind == "step":
            children = [("branch", b) for b in node.branches.values()]
        else:
            children = [("step", s) for s in node.steps.values()]
        stack.extend(reversed(children))


def shape(run: Any) -> dict[str, tuple[str, int]]:
    """Every step and branch of a run with its status (and a step's number of attempts)."""
    return {
        name: (node.status, len(node.attempts) if kind == "step" else -1)
        for kind, name, node in walk(run)
    }
