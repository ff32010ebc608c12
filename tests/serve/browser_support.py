"""What the browser tests of ``runlog serve`` run on: the real ``runlog serve`` process (started
with ``--port 0``, its printed URL read, ``/healthz`` waited for), Debian's Chromium driven by
Playwright (never a browser Playwright downloads: scripts/chromium.sh provides it), axe-core's
accessibility check run in the page, a keyboard walk, and screenshots kept as test artefacts.

axe-core comes from the ``axe-playwright-python`` package (it ships ``axe.min.js``); Playwright's
``evaluate`` injects it through the DevTools protocol, which the page's Content-Security-Policy
(``script-src 'self'``) does not apply to, so the pages are checked exactly as served.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

RUNLOG = str(Path(sys.executable).with_name("runlog"))
CHROMIUM_SCRIPT = ROOT / "scripts" / "chromium.sh"
URL_LINE = re.compile(r"runlog serve: (http://\S+) ")
START_TIMEOUT = 60.0
VIEWPORT = {"width": 1280, "height": 800}


def artifacts_folder() -> Path:
    """Where screenshots go: ``RUNLOG_TEST_ARTIFACTS``, else ``artifacts/serve`` at the root."""
    folder = Path(os.environ.get("RUNLOG_TEST_ARTIFACTS") or ROOT / "artifacts" / "serve")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chromium_binary() -> str:
    """Chromium from scripts/chromium.sh: skipped on a developer machine without one, a
    failure in CI (CI=true), where every integration test must run."""
    try:
        found = subprocess.run(
            ["bash", str(CHROMIUM_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = f"scripts/chromium.sh did not run: {exc}"
    else:
        binary = found.stdout.strip().splitlines()[-1] if found.stdout.strip() else ""
        if found.returncode == 0 and binary and os.access(binary, os.X_OK):
            return binary
        problem = f"scripts/chromium.sh exited {found.returncode}: {found.stderr.strip()}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"Chromium is required in CI: {problem}")
    pytest.skip(f"no headless Chromium for the browser tests: {problem}")


# --- the server -------------------------------------------------------------------------------


@dataclass
class Served:
    """A running ``runlog serve``: its base URL (no token on 127.0.0.1) and its output files."""

    process: subprocess.Popen[bytes]
    url: str
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def get(self, path: str, timeout: float = 30) -> tuple[int, bytes]:
        """A plain HTTP GET (no browser): status and body."""
        try:
            with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=timeout) as answer:
                return int(answer.status), bytes(answer.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)


def start_serve(cwd: Path, *args: str, logs: Path, env: dict[str, str] | None = None) -> Served:
    """``runlog serve --port 0 ARGS`` started in ``cwd``; returns once its printed URL answers
    ``/healthz`` with ``ok``. Its output goes to files in ``logs`` (a pipe nobody reads would
    fill and block it)."""
    logs.mkdir(parents=True, exist_ok=True)
    stdout, stderr = logs / "serve.out", logs / "serve.err"
    base_env = {k: v for k, v in os.environ.items() if k != "RUNNABLE_CONFIGURATION_FILE"}
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [RUNLOG, "serve", "--port", "0", *args],
            cwd=cwd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**base_env, **(env or {})},
        )
    served = Served(process, "", stdout, stderr)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while not served.url:
            match = URL_LINE.search(stdout.read_text(errors="replace"))
            if match:
                served.url = match.group(1)
            elif process.poll() is not None:
                raise AssertionError(f"runlog serve exited {process.returncode}: {served.output()}")
            elif time.monotonic() > deadline:
                raise AssertionError(f"runlog serve printed no URL: {served.output()}")
            else:
                time.sleep(0.05)
        while True:
            try:
                status, body = served.get("/healthz", timeout=5)
                if status == 200 and body.strip() == b"ok":
                    return served
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{served.url}healthz never answered ok: {served.output()}")
            time.sleep(0.1)
    except BaseException:
        served.stop()
        raise


# --- the browser ------------------------------------------------------------------------------


@dataclass
class PageWatch:
    """What a page did that a test must fail on: a dialog opened (a script from a run's data
    ran), an error in its console (a CSP violation, a script error) or an uncaught exception."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        def on_console(message: Any) -> None:
            # A failed load is told by on_response, which knows what was loaded: a page's own
            # 4xx (a bad filter's 400) is what a test asks for and checks.
            if message.type == "error" and not message.text.startswith("Failed to load"):
                self.errors.append(f"console: {message.text}")

        def on_response(response: Any) -> None:
            kind = response.request.resource_type
            # The favicon is the browser's own guess, not something a page asked for.
            favicon = response.url.endswith("/favicon.ico")
            if response.status >= 400 and kind != "document" and not favicon:
                self.errors.append(f"{kind} {response.url}: {response.status}")

        page.on("dialog", on_dialog)
        page.on("console", on_console)
        page.on("response", on_response)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def check(self) -> None:
        assert not self.dialogs, f"a dialog opened: {self.dialogs}"
        assert not self.errors, "the page reported errors:\n" + "\n".join(self.errors)


def screenshot(page: Any, name: str) -> Path:
    """The whole page as ``<artifacts>/<name>.png``, after checking it fits the window's
    width: a page wider than 1280 pixels scrolls sideways (a long hash or value not wrapped)."""
    path = artifacts_folder() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], (
        f"the {name} page is {widths[0]} pixels wide in a {widths[1]}-pixel window (see {path})"
    )
    return path


# --- accessibility ------------------------------------------------------------------------------

FAILING_IMPACTS = ("serious", "critical")


def _describe(violation: dict[str, Any]) -> str:
    targets = "; ".join(", ".join(map(str, node["target"])) for node in violation["nodes"][:5])
    more = len(violation["nodes"]) - 5
    return (
        f"{violation['id']} ({violation['impact']}): {violation['help']} "
        f"at {targets}{f' and {more} more' if more > 0 else ''}"
    )


def check_accessibility(page: Any, what: str) -> None:
    """axe-core's rules on the page as it is now: any serious or critical violation fails, and
    the failure also lists the moderate and minor ones; those alone are a warning."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    violations = results.response["violations"]
    failing = [v for v in violations if v["impact"] in FAILING_IMPACTS]
    others = [v for v in violations if v["impact"] not in FAILING_IMPACTS]
    if failing:
        lines = [_describe(v) for v in failing + others]
        pytest.fail(f"axe-core found on the {what} page:\n" + "\n".join(lines))
    if others:
        warnings.warn(
            f"axe-core, {what} page: " + "; ".join(_describe(v) for v in others), stacklevel=2
        )


_FOCUSED = """(selectors) => {
    const focused = document.activeElement;
    return Object.entries(selectors)
        .filter(([, selector]) => {
            const first = document.querySelector(selector);
            return first !== null && first === focused;
        })
        .map(([name]) => name);
}"""


def tab_through(page: Any, targets: dict[str, str], limit: int = 200) -> None:
    """Pressing Tab from the top of the page reaches the first element of every selector of
    ``targets`` (a name for the message: a CSS selector), each with a visible focus ring."""
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); }")
    page.evaluate("() => window.scrollTo(0, 0)")
    reached: set[str] = set()
    for _ in range(limit):
        page.keyboard.press("Tab")
        for name in page.evaluate(_FOCUSED, targets):
            if name not in reached:
                reached.add(name)
                outline = page.evaluate(
                    """() => {
                        const s = getComputedStyle(document.activeElement);
                        return [s.outlineStyle, s.outlineWidth, s.boxShadow];
                    }"""
                )
                visible = (outline[0] != "none" and outline[1] != "0px") or outline[2] != "none"
                assert visible, f"{name} shows no focus ring when focused by Tab: {outline}"
        if reached == set(targets):
            return
    missing = sorted(set(targets) - reached)
    raise AssertionError(f"Tab never reached {missing} in {limit} presses")


def browser_page(browser: Any) -> Iterator[tuple[Any, PageWatch]]:
    """A fresh context (1280x800) and page, watched; closed after."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(20_000)
    watch = PageWatch()
    watch.attach(page)
    try:
        yield page, watch
    finally:
        context.close()
