"""Stored strings that would drive the terminal: every human-readable output of ``runlog``
shows control characters (C0, DEL, C1), bidi controls and rich markup as visible text, as
``ls -b`` does, and leaves ``--json`` exact.

Runs are written whose run id, tag, step and branch names, parameters, error messages and
catalog entries hold an OSC 52 clipboard write, a screen clear, a window title, the 8-bit CSI,
bidi overrides and rich markup; the real console script is run on them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from runlog_store.config import load_store
from runlog_store.models import (
    FAIL,
    SUCCESS,
    DataCatalog,
    JsonParameter,
    MetricParameter,
    StepAttempt,
)

from ..conftest import write_config
from ..terminal import read_terminal

RUNLOG = str(Path(sys.executable).with_name("runlog"))

OSC52 = "\x1b]52;c;aGFja2Vk\x1b\\"  # puts "hacked" on the clipboard
CLEAR = "\x1b[2J"
TITLE = "\x1b]0;owned\x07"
CSI8 = "\u009b31m"  # the 8-bit CSI: red text on a terminal that reads C1 controls
BIDI = "\u202eevil\u202c \u2067x\u2069"  # a right-to-left override, an isolate
MARKUP = "[bold red]x[/]"
LINK = "[link=https://example.invalid]click[/link]"

# A run id may hold neither C0 controls nor '/', but C1 controls, bidi controls and brackets.
RUN_ID = "hostile\u009b2J\u202e[red]"
OTHER_ID = "plain-b"
TAG = f"{TITLE}{MARKUP}"
STEP = f"train{CLEAR}"
MESSAGE = f"boom{OSC52} {LINK}\r\nsecond line {BIDI}\x7f\rhidden"
CATALOG_NAME = f"data/{CLEAR}file.csv"

# What must never reach a terminal from a stored string: C0 controls but the newline, DEL, C1
# controls, bidi controls and the Unicode line and paragraph separators.
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _dangerous(char: str) -> bool:
    code = ord(char)
    return (
        (code < 0x20 and char != "\n")
        or 0x7F <= code <= 0x9F
        or char in _BIDI
        or char in "\u2028\u2029"
    )


def assert_inert(output: bytes, what: str) -> str:
    """The output as text, after checking it holds nothing a terminal would act on."""
    text = output.decode("utf-8")
    found = sorted({f"U+{ord(c):04X}" for c in text if _dangerous(c)})
    assert not found, f"{what} printed raw {', '.join(found)}:\n{text!r}"
    return text


def _env(columns: int = 400) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "TERM")}
    env.pop("RUNNABLE_CONFIGURATION_FILE", None)
    return {**env, "COLUMNS": str(columns)}


def runlog(*args: str, cwd: Path, code: int = 0) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run([RUNLOG, *args], cwd=cwd, capture_output=True, env=_env(), timeout=300)
    assert result.returncode == code, (args, result.returncode, result.stdout, result.stderr)
    return result


def write_hostile_run(config: Path, run_id: str, *, value: str = "a") -> None:
    store = load_store(config)
    store.create_run_log(run_id, tag=TAG)
    store.set_parameters(
        run_id,
        {
            f"osc52{OSC52}": JsonParameter(kind="json", value=f"{OSC52}{value}"),
            "clear": JsonParameter(kind="json", value=f"{CLEAR}{value}"),
            "title": JsonParameter(kind="json", value=f"{TITLE}{value}"),
            f"c1{CSI8}": JsonParameter(kind="json", value=f"{CSI8}{value}"),
            "bidi": JsonParameter(kind="json", value=f"{BIDI}{value}"),
            "markup": JsonParameter(kind="json", value=f"{MARKUP}{LINK}:warning:{value}"),
        },
    )
    start = datetime.now() - timedelta(minutes=5)
    step = store.create_step_log(STEP, STEP)
    step.status = FAIL
    step.attempts = [
        StepAttempt(
            attempt_number=1,
            status=FAIL,
            message=MESSAGE,
            start_time=str(start),
            end_time=str(start + timedelta(seconds=2)),
        ),
        StepAttempt(
            attempt_number=2,
            status=FAIL,
            message=f"again {CLEAR}",
            start_time=str(start + timedelta(seconds=3)),
            end_time=str(start + timedelta(seconds=4)),
            input_parameters={f"in{TITLE}": JsonParameter(kind="json", value=BIDI)},
            output_parameters={"out": JsonParameter(kind="json", value=MARKUP)},
            user_defined_metrics={f"m{CSI8}": MetricParameter(kind="metric", value=OSC52)},
        ),
    ]
    step.data_catalog = [
        DataCatalog(
            name=CATALOG_NAME,
            data_hash="blake3:" + "0" * 64,
            catalog_relative_path=CATALOG_NAME,
            stage="get",
        ),
        DataCatalog(
            name=f"other{TITLE}",
            data_hash=f"{CLEAR}not-a-hash",
            catalog_relative_path=f"other{TITLE}",
            stage="get",
        ),
    ]
    store.add_step_log(step, run_id)
    fan = store.create_step_log(f"fan{BIDI}", f"fan{BIDI}")
    fan.step_type, fan.status = "map", SUCCESS
    store.add_step_log(fan, run_id)
    branch = store.create_branch_log(
        f"fan{BIDI}.{CSI8}", {"item": JsonParameter(kind="json", value=f"{OSC52}")}
    )
    branch.status = SUCCESS
    store.add_branch_log(branch, run_id)
    store.update_run_log_status(run_id, FAIL)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with a configuration (a chunked-fs store whose folder name holds an escape,
    a second store to copy into) and two hostile runs."""
    folder = tmp_path / "project"
    folder.mkdir()
    config = write_config(folder / "config.yaml", "chunked-fs", folder / f"logs{CLEAR}")
    write_config(folder / "target.yaml", "file-system", folder / f"target{TITLE}")
    write_hostile_run(config, RUN_ID)
    write_hostile_run(config, OTHER_ID, value="b")
    return folder


HUMAN_COMMANDS = {
    "show": (["show", RUN_ID], 0),
    "show one level": (["show", RUN_ID, "--depth", "1", "--max-branches", "0"], 0),
    "list": (["list"], 0),
    "list of failed runs": (["list", "--status", "FAIL", "--tag", TAG], 0),
    "list matching nothing": (["list", "--tag", f"no{CLEAR}"], 0),
    "diff": (["diff", RUN_ID, OTHER_ID], 1),
    "verify": (["verify", RUN_ID], 1),
    "timeline": (["timeline", RUN_ID], 0),
    "export": (["export", RUN_ID, "-o", "exported.json"], 0),
    "copy": (["copy", RUN_ID, "--to", "target.yaml"], 0),
    "fold": (["fold", RUN_ID], 0),
    "gc dry run": (["gc", "--older-than", "0s", "--dry-run", "--include-unfinished"], 0),
    "gc": (["gc", "--older-than", "0s", "--with-catalog"], 0),
    "missing run": (["show", f"gone{CSI8}{BIDI}"], 2),
    "missing run, verbose": (["show", f"gone{CSI8}{BIDI}", "--verbose"], 2),
    "fold of a one-document store": (["fold", RUN_ID, "-c", "target.yaml"], 2),
}


@pytest.mark.parametrize("name", list(HUMAN_COMMANDS))
def test_no_command_prints_stored_control_characters_raw(project: Path, name: str) -> None:
    args, code = HUMAN_COMMANDS[name]
    if name == "fold of a one-document store":
        runlog("copy", RUN_ID, "--to", "target.yaml", "-c", "config.yaml", cwd=project)
    with_config = args if "-c" in args else [*args, "-c", "config.yaml"]
    result = runlog(*with_config, cwd=project, code=code)
    out = assert_inert(result.stdout, f"runlog {name} (stdout)")
    err = assert_inert(result.stderr, f"runlog {name} (stderr)")
    assert out or err
    # The run id is there to copy, its control characters visible (in an error message as
    # Python writes a string: the 8-bit CSI as \x9b).
    if name not in ("list matching nothing", "diff", "missing run", "missing run, verbose"):
        shown = ("hostile\\u009b2J\\u202e[red]", "hostile\\x9b2J\\u202e[red]")
        assert any(run_id in out + err for run_id in shown), out + err


def test_show_draws_every_stored_string_visibly_and_literally(project: Path) -> None:
    out = assert_inert(runlog("show", RUN_ID, "-c", "config.yaml", cwd=project).stdout, "show")
    assert "Run hostile\\u009b2J\\u202e[red]" in out
    assert "tag=\\x1b]0;owned\\x07[bold red]x[/]" in out  # markup printed as it is stored
    assert "train\\x1b[2J" in out
    # An error message keeps its lines (a traceback is read line by line), nothing else: a
    # lone carriage return would go back over the line and hide what is before it.
    message = "boom\\x1b]52;c;aGFja2Vk\\x1b\\ [link=https://example.invalid]click[/link]\n"
    assert message in out
    assert "second line \\u202eevil\\u202c \\u2067x\\u2069\\x7f\\rhidden" in out
    assert "catalog get: data/\\x1b[2Jfile.csv" in out
    assert "fan\\u202eevil" in out and "\\u009b31m" in out
    # Ordinary Unicode is not escaped: the tree's marks and ellipses are drawn as they are.
    assert "✘ FAIL" in out


def test_diff_and_list_print_markup_and_emoji_codes_literally(project: Path) -> None:
    diff = runlog("diff", RUN_ID, OTHER_ID, "-c", "config.yaml", cwd=project, code=1).stdout
    text = assert_inert(diff, "diff")
    assert '"[bold red]x[/][link=https://example.invalid]click[/link]:warning:a"' in text
    assert "osc52\\x1b]52;c;aGFja2Vk\\x1b\\" in text
    listed = assert_inert(runlog("list", "-c", "config.yaml", cwd=project).stdout, "list")
    assert "\\x1b]0;owned\\x07[bold red]x[/]" in listed
    assert f"logs{CLEAR}" not in listed and "logs\\x1b[2J" in listed


def test_ordinary_unicode_is_printed_as_it_is(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", "file-system", tmp_path / "logs")
    store = load_store(config)
    run_id = "café-日本語-🚀"
    store.create_run_log(run_id, tag="naïve 🚀", status=SUCCESS)
    shown = assert_inert(runlog("show", run_id, "-c", str(config), cwd=tmp_path).stdout, "show")
    assert f"Run {run_id}" in shown and "tag=naïve 🚀" in shown
    listed = assert_inert(runlog("list", "-c", str(config), cwd=tmp_path).stdout, "list")
    assert run_id in listed and "naïve 🚀" in listed


def test_json_output_is_exact(project: Path) -> None:
    """--json is for programs: every stored string as it is, control characters included."""
    listed = json.loads(runlog("list", "--json", "-c", "config.yaml", cwd=project).stdout)
    assert {run["run_id"] for run in listed} == {RUN_ID, OTHER_ID}
    assert all(run["tag"] == TAG for run in listed)
    assert {run["failed_step"] for run in listed} == {STEP}
    shown = json.loads(runlog("show", RUN_ID, "--json", "-c", "config.yaml", cwd=project).stdout)
    assert shown["run_id"] == RUN_ID and shown["tag"] == TAG
    assert shown["steps"][STEP]["attempts"][0]["message"] == MESSAGE
    assert shown["parameters"][f"osc52{OSC52}"]["value"] == f"{OSC52}a"
    differences = json.loads(
        runlog("diff", RUN_ID, OTHER_ID, "--json", "-c", "config.yaml", cwd=project, code=1).stdout
    )
    found = {d["key"]: d for d in differences}
    assert json.loads(found[f"osc52{OSC52}"]["a"]) == f"{OSC52}a"
    decisions = json.loads(
        runlog(
            "gc", "--older-than", "0s", "--dry-run", "--json", "-c", "config.yaml", cwd=project
        ).stdout
    )
    assert {d["run_id"] for d in decisions} == {RUN_ID, OTHER_ID}


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("\x1b[2J\x00\x7f\t", "\\x1b[2J\\x00\\x7f\\t"),
        ("\u009b31m\u0085", "\\u009b31m\\u0085"),  # C1: the 8-bit CSI, next line
        (
            "\u202eabc\u202c\u2066\u2069\u200f\u061c",
            "\\u202eabc\\u202c\\u2066\\u2069\\u200f\\u061c",
        ),
        ("a\u2028b\u2029", "a\\u2028b\\u2029"),
        ("one\ntwo\r\nthree\rover", "one\\ntwo\\r\\nthree\\rover"),
        ("bad\udcffname", "bad\\xffname"),  # a byte of a file name that is not UTF-8
        (
            "café 日本語 🚀 👨\u200d👩\u200d👧 [b]x[/b] \\x1b",
            "café 日本語 🚀 👨\u200d👩\u200d👧 [b]x[/b] \\x1b",
        ),
    ],
)
def test_printable_shows_what_a_terminal_would_act_on(stored: str, shown: str) -> None:
    from runlog_store.cli.render import printable

    assert printable(stored) == shown
    assert not any(_dangerous(char) for char in printable(stored))


def test_printable_keeps_line_ends_only_when_asked() -> None:
    from runlog_store.cli.render import printable

    assert printable("one\ntwo\r\nthree\rover", lines=True) == "one\ntwo\nthree\\rover"


# --- on a terminal: rich draws its colours, and nothing else ------------------------------------

_SGR = re.compile(rb"\x1b\[[0-9;]*m")


def _on_terminal(args: list[str], cwd: Path) -> tuple[int, bytes]:
    """(exit status, what was drawn) with stdout and stderr on a pseudo-terminal."""
    leader, follower = os.openpty()
    env = {**_env(200), "TERM": "xterm-256color"}
    proc = subprocess.Popen([RUNLOG, *args], cwd=cwd, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    drawn = read_terminal(leader)
    return proc.wait(120), drawn


@pytest.mark.parametrize(
    "args",
    [
        ["show", RUN_ID],
        ["list"],
        ["diff", RUN_ID, OTHER_ID],
        ["verify", RUN_ID],
        ["gc", "--older-than", "0s", "--dry-run"],
    ],
    ids=lambda args: args[0],
)
def test_on_a_terminal_only_colours_are_drawn(project: Path, args: list[str]) -> None:
    """A link in stored markup would be drawn as an OSC 8 hyperlink, a stored escape as itself:
    on a terminal the only escape sequences are rich's colours (SGR)."""
    code, drawn = _on_terminal([*args, "-c", "config.yaml"], project)
    assert code in (0, 1), drawn
    assert _SGR.search(drawn), "no colours: not drawn as on a terminal"
    plain = _SGR.sub(b"", drawn)
    assert b"\x1b" not in plain, plain
    assert_inert(plain.replace(b"\r\n", b"\n"), f"runlog {args[0]} on a terminal")
