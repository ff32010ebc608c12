"""Makes the runnable 0.50 fixtures the tests read, by running real runnable 0.50 pipelines.

    .venv/bin/python scripts/make-fixtures.py [DEST]     (DEST: tests/fixtures/runnable-0.50)

Each run is made in a working folder of its own (a temporary git repository, so runnable records a
git code identity as it does in a project), with a runnable configuration that selects runnable's
own services: the `local` executor, the `file-system` or `chunked-fs` run log store and the
`file-system` catalog. What the runs wrote is then copied into DEST, which it replaces:

    file-system/fs-map.json       a pipeline: gen -> map_state (a map over 4 items; each branch's
                                  `work` puts data/out_<item>.txt) -> parallel step (branch1 and
                                  branch2: a stub, then `hello python`) -> write (puts
                                  data/table.csv and data/notes.txt) -> read (gets data/table.csv)
                                  -> score (a metric)
    file-system/fs-fail.json      a failed run: hello -> boom (raises), so the run ends at `fail`
    file-system/fs-job.json       a job (runnable's PythonJob)
    chunked-fs/chunked-map/       the map pipeline with the chunked-fs store, branches in worker
                                  processes (RunLog.json + BranchLog-<branch>.json)
    expected-full/chunked-map.json
                                  runnable's own get_run_log_by_id("chunked-map", full=True) of
                                  that folder: the answer a reader of the chunks must give
    catalog/fs-map/, catalog/chunked-map/
                                  the catalog copies of the two map runs: data/* (whose sha256 is
                                  the data_hash in the run logs) and the captured task output
                                  (<step><random 3 characters>.execution.log)

The run ids and parameters are fixed, so the runs have the same shape every time. What varies
between two runs: times, the code identity (the commit id of the working folder's repository),
the execution logs (times in them, and runnable's random suffix in their names), the order in
which runnable lists files (catalog entries of a glob, branches of the chunked full view) and,
where branches run in parallel processes, which other branches' files a map branch's `put` of
data/out_*.txt found. tests/runnable/test_fixtures.py runs this script and checks the shapes still
match.

Needs runnable 0.50 in the interpreter that runs this script (the project's .venv has it) and git.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / "tests" / "fixtures" / "runnable-0.50"
RUNNABLE_VERSION = "0.50."

# The task functions every pipeline calls (runnable records them as `funcs.<name>`).
FUNCS = '''\
"""The tasks of the fixture pipelines."""

from pathlib import Path

TABLE = "a,b\\n1,2\\n3,4\\n"
NOTES = "hello catalog\\n"


def make_items():
    return [1, 2, 3, 4]


def work(item):
    Path("data").mkdir(exist_ok=True)
    Path(f"data/out_{item}.txt").write_text(f"item {item}\\n" * 100)
    return item * 10


def hello():
    print("hello")


def write_files():
    Path("data").mkdir(exist_ok=True)
    Path("data/table.csv").write_text(TABLE)
    Path("data/notes.txt").write_text(NOTES)


def read_files():
    if Path("data/table.csv").read_text() != TABLE:
        raise ValueError("data/table.csv did not come back from the catalog as written")


def score(items, processed):
    """A fixed score, so that the metric's value is known."""
    return 0.6


def boom():
    raise RuntimeError("boom: this step fails on purpose")
'''

MAP_PIPELINE = """\
from runnable import Catalog, Map, Parallel, Pipeline, PythonTask, Stub, json, metric

import funcs


def hello_branch():
    return Pipeline(
        steps=[Stub(name="a stub"), PythonTask(name="hello python", function=funcs.hello)]
    )


def main():
    gen = PythonTask(name="gen", function=funcs.make_items, returns=[json("items")])
    work = PythonTask(
        name="work",
        function=funcs.work,
        catalog=Catalog(put=["data/out_*.txt"]),
        returns=[json("processed")],
    )
    map_state = Map(
        name="map_state",
        branch=Pipeline(steps=[work]),
        iterate_on="items",
        iterate_as="item",
    )
    parallel = Parallel(
        name="parallel step",
        branches={"branch1": hello_branch(), "branch2": hello_branch()},
    )
    write = PythonTask(
        name="write",
        function=funcs.write_files,
        catalog=Catalog(put=["data/table.csv", "data/notes.txt"]),
    )
    read = PythonTask(
        name="read", function=funcs.read_files, catalog=Catalog(get=["data/table.csv"])
    )
    score = PythonTask(name="score", function=funcs.score, returns=[metric("score")])
    pipeline = Pipeline(steps=[gen, map_state, parallel, write, read, score])
    pipeline.execute()
    return pipeline


if __name__ == "__main__":
    main()
"""

FAIL_PIPELINE = """\
from runnable import Pipeline, PythonTask

import funcs


def main():
    hello = PythonTask(name="hello", function=funcs.hello)
    boom = PythonTask(name="boom", function=funcs.boom)
    pipeline = Pipeline(steps=[hello, boom])
    pipeline.execute()
    return pipeline


if __name__ == "__main__":
    main()
"""

JOB = """\
from runnable import PythonJob

import funcs


def main():
    job = PythonJob(function=funcs.hello)
    job.execute()
    return job


if __name__ == "__main__":
    main()
"""

FILE_SYSTEM_CONFIG = """\
pipeline-executor:
  type: local
run-log-store:
  type: file-system
catalog:
  type: file-system
"""

JOB_CONFIG = """\
job-executor:
  type: local
run-log-store:
  type: file-system
catalog:
  type: file-system
"""

CHUNKED_CONFIG = """\
pipeline-executor:
  type: local
  config:
    enable_parallel: true
run-log-store:
  type: chunked-fs
catalog:
  type: file-system
"""

# run id -> (program, configuration, whether the run must fail)
RUNS = {
    "fs-map": ("map_pipeline.py", FILE_SYSTEM_CONFIG, False),
    "fs-fail": ("fail_pipeline.py", FILE_SYSTEM_CONFIG, True),
    "fs-job": ("job.py", JOB_CONFIG, False),
    "chunked-map": ("map_pipeline.py", CHUNKED_CONFIG, False),
}
# What DEST holds, and so all it may hold when it is replaced.
FIXTURE_FOLDERS = {"file-system", "chunked-fs", "expected-full", "catalog"}
# The runs whose catalog copies are kept (the others' hold only their task output).
CATALOG_RUNS = ("fs-map", "chunked-map")
SOURCES = {
    "funcs.py": FUNCS,
    "map_pipeline.py": MAP_PIPELINE,
    "fail_pipeline.py": FAIL_PIPELINE,
    "job.py": JOB,
}

# A fixed author and date, so the working folder's commit (the runs' code identity) is the same
# on every machine that has the same git.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "runlog-store fixtures",
    "GIT_AUTHOR_EMAIL": "fixtures@runlog-store.invalid",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "runlog-store fixtures",
    "GIT_COMMITTER_EMAIL": "fixtures@runlog-store.invalid",
    "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+00:00",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


class FixtureError(Exception):
    """A run did not do what the fixtures need; the message says which, with its output's end."""


def _check_runnable() -> None:
    try:
        from importlib.metadata import PackageNotFoundError, version

        found = version("runnable")
    except PackageNotFoundError:
        raise FixtureError(
            f"runnable is not installed for {sys.executable}; run this script with the "
            "project's .venv/bin/python (bash scripts/install.sh makes it)"
        ) from None
    if not found.startswith(RUNNABLE_VERSION):
        raise FixtureError(f"these fixtures are runnable 0.50's, and {sys.executable} has {found}")
    if shutil.which("git") is None:
        raise FixtureError("git is needed: runnable records the working folder's commit")


def _environment(run_id: str, config: Path) -> dict[str, str]:
    """The caller's environment without runnable's own variables (a configuration or run id set
    for another project must not leak in), plus this run's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNABLE_")}
    env.update(GIT_ENV)
    env["RUNNABLE_RUN_ID"] = run_id
    env["RUNNABLE_CONFIGURATION_FILE"] = str(config)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["COLUMNS"] = "80"  # runnable's console output, kept in the execution logs
    return env


def _git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=folder,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
    )


def _working_folder(parent: Path, run_id: str, config_text: str) -> Path:
    folder = parent / run_id
    folder.mkdir()
    for name, text in SOURCES.items():
        (folder / name).write_text(text)
    (folder / "runnable-config.yaml").write_text(config_text)
    _git(folder, "init", "-q", "-b", "main")
    _git(folder, "add", ".")
    _git(folder, "commit", "-q", "-m", "The fixture pipelines")
    return folder


def _run(folder: Path, run_id: str, program: str, must_fail: bool) -> None:
    log = folder.parent / f"{run_id}.log"
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, program],
            cwd=folder,
            env=_environment(run_id, folder / "runnable-config.yaml"),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    status = _stored_status(folder, run_id)
    expected = "FAIL" if must_fail else "SUCCESS"
    if status != expected or (done.returncode != 0 and not must_fail):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        outcome = f"status {status}" if status else "no run log"
        raise FixtureError(
            f"run {run_id} ({program}) left {outcome} (exit {done.returncode}); the fixtures "
            f"need {expected}. Its output ends:\n{tail}"
        )


def _stored_status(folder: Path, run_id: str) -> str | None:
    logs = folder / ".run_log_store"
    for path in (logs / f"{run_id}.json", logs / run_id / "RunLog.json"):
        if path.is_file():
            status = json.loads(path.read_text()).get("status")
            return status if isinstance(status, str) else None
    return None


# runnable's own full run log of a chunked-fs run, read in a process of its own (importing
# runnable prints to stdout): argv is the log folder, the run id and the file to write.
FULL_VIEW = """\
import json, sys
from pathlib import Path
from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore

log_folder, run_id, out = sys.argv[1:]
run_log = ChunkedFileSystemRunLogStore(log_folder=log_folder).get_run_log_by_id(run_id, full=True)
Path(out).write_text(json.dumps(json.loads(run_log.model_dump_json()), indent=1) + "\\n")
"""


def _write_full_view(log_folder: Path, run_id: str, out: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FULL_VIEW, str(log_folder), run_id, str(out)],
        cwd=log_folder.parent,
        env=_environment(run_id, log_folder.parent / "runnable-config.yaml"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise FixtureError(f"runnable could not read run {run_id} whole:\n{done.stderr[-3000:]}")


def _check_dest(dest: Path) -> None:
    """``dest`` is replaced whole, so it must be new, empty or a folder of these fixtures (a
    mistyped path must not lose someone's files)."""
    if dest.is_dir():
        unknown = sorted(p.name for p in dest.iterdir() if p.name not in FIXTURE_FOLDERS)
        if unknown:
            raise FixtureError(
                f"{dest} holds {', '.join(unknown)}, which the fixtures do not: not replacing it"
            )
    elif dest.exists():
        raise FixtureError(f"{dest} is not a folder")


def make(dest: Path, work: Path) -> None:
    """Runs every pipeline in its own folder under ``work`` and writes the fixtures to ``dest``
    (replacing what it held)."""
    _check_runnable()
    _check_dest(dest)
    made = work / "made"
    for run_id, (program, config, must_fail) in RUNS.items():
        folder = _working_folder(work, run_id, config)
        _run(folder, run_id, program, must_fail)
        logs, catalog = folder / ".run_log_store", folder / ".catalog"
        if (logs / f"{run_id}.json").is_file():
            (made / "file-system").mkdir(parents=True, exist_ok=True)
            shutil.copy2(logs / f"{run_id}.json", made / "file-system" / f"{run_id}.json")
        else:
            shutil.copytree(logs / run_id, made / "chunked-fs" / run_id)
            (made / "expected-full").mkdir(parents=True, exist_ok=True)
            _write_full_view(logs, run_id, made / "expected-full" / f"{run_id}.json")
        if run_id in CATALOG_RUNS:
            shutil.copytree(catalog / run_id, made / "catalog" / run_id)
    if dest.exists():
        shutil.rmtree(dest)  # checked by _check_dest: empty or fixtures
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(made, dest)


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(textwrap.dedent(__doc__ or "").strip())
        return 0
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: python scripts/make-fixtures.py [DEST]", file=sys.stderr)
        return 2
    dest = Path(argv[0]).resolve() if argv else DEFAULT_DEST
    try:
        with tempfile.TemporaryDirectory(prefix="runlog-fixtures-") as work:
            make(dest, Path(work))
    except FixtureError as err:
        print(f"make-fixtures: {err}", file=sys.stderr)
        return 1
    print(f"make-fixtures: wrote runs {', '.join(RUNS)} to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
