"""``runlog serve``: every route of the application over real stores (Starlette's test client),
what a hostile run can put in a page (nothing it can run, nothing that reorders the text), the
headers and the token, and the command as a real process: its printed URL, its token on a
non-loopback address, and a run followed live over server-sent events while it is written."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx2
import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from runlog_store import BaseRunLogStore, create_store
from runlog_store.cli.render import printable
from runlog_store.config import load_store
from runlog_store.models import (
    FAIL,
    PROCESSING,
    SUCCESS,
    DataCatalog,
    JsonParameter,
    MetricParameter,
    StepAttempt,
)
from runlog_store.serve import create_app
from runlog_store.serve.app import CSP
from runlog_store.stores.project import ProjectRunLogStore

from ..conftest import RUNNABLE_FIXTURES, write_config
from ..hostile.test_terminal import (
    BIDI,
    CATALOG_NAME,
    CLEAR,
    CSI8,
    MESSAGE,
    OSC52,
    OTHER_ID,
    RUN_ID,
    STEP,
    TAG,
    TITLE,
    write_hostile_run,
)

RUNLOG = str(Path(sys.executable).with_name("runlog"))
SCRIPT = "<script>alert(1)</script>"
IMG = "\"'><img src=x onerror=alert(1)>"
# A run id can hold the image tag (no '/' in it), not the script's end tag.
IMG_ID = f"img{IMG}"

# What must never reach a page raw from a stored string: C0 controls but the newline and tab
# (a page's own whitespace), DEL, C1 controls, bidi controls, the line and paragraph separators.
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def dangerous(text: str) -> list[str]:
    return sorted(
        {
            f"U+{ord(c):04X}"
            for c in text
            if (ord(c) < 0x20 and c not in "\n\t")
            or 0x7F <= ord(c) <= 0x9F
            or c in _BIDI
            or c in "\u2028\u2029"
        }
    )


def assert_secure_headers(response: Any) -> None:
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


class _Tags(HTMLParser):
    """The tags of a page as a browser reads them: what each element is, with which
    attributes (a stored string escaped into an attribute's value is no attribute)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("an inline script")
        if tag == "style":
            self.problems.append("a style element")
        if "style" in names:
            self.problems.append(f"a style attribute on <{tag}>")
        self.problems += [f"{name} on <{tag}>" for name in names if name.startswith("on")]
        if tag in ("img", "iframe", "object", "embed"):
            self.problems.append(f"an <{tag}> element")


def assert_no_inline_code(html: str) -> None:
    """No inline script, no style element or attribute, no event handler attribute, no
    element a stored string could have smuggled in."""
    tags = _Tags()
    tags.feed(html)
    assert not tags.problems, tags.problems


def shown_html(text: str) -> str:
    """A stored string as the page's HTML holds it: made visible, then escaped (as Jinja
    does: quotes too)."""
    return str(escape(printable(text)))


# --- runs written for the tests ---------------------------------------------------------------


def sweep_run(
    store: BaseRunLogStore,
    run_id: str,
    *,
    tag: str = "sweep",
    status: str = SUCCESS,
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    ago: timedelta = timedelta(0),
    branches: int = 0,
) -> None:
    """A run that started ``ago``, with root parameters and metrics, a step (a map of
    ``branches`` branches, one failed, when there are any)."""
    start = datetime.now() - ago - timedelta(seconds=2)
    store.create_run_log(run_id, dag_hash="d" * 40, tag=tag, status=PROCESSING)
    if params:
        store.set_parameters(
            run_id, {k: JsonParameter(kind="json", value=v) for k, v in params.items()}
        )
    if metrics:
        store.set_parameters(
            run_id, {k: MetricParameter(kind="metric", value=v) for k, v in metrics.items()}
        )
    step = store.create_step_log("train", "train")
    step.step_type = "map" if branches else "task"
    step.attempts.append(
        StepAttempt(
            attempt_number=1,
            start_time=str(start),
            end_time=str(start + timedelta(seconds=1)),
            status=status,
            message="" if status != FAIL else "it broke",
        )
    )
    step.status = status
    store.add_step_log(step, run_id)
    for index in range(branches):
        branch = store.create_branch_log(f"train.{index}")
        branch.status = FAIL if index == 1 else SUCCESS
        store.add_branch_log(branch, run_id)
    store.update_run_log_status(run_id, status)


SWEEP: dict[str, tuple[int, str, str, dict[str, Any], dict[str, Any]]] = {
    # run id: (hours ago, status, tag, params, metrics)
    "r1": (4, SUCCESS, "sweep", {"lr": 0.1, "layers": 2}, {"accuracy": 0.7}),
    "r2": (3, SUCCESS, "sweep", {"lr": 0.2, "layers": 2}, {"accuracy": 0.9}),
    "r3": (2, FAIL, "sweep", {"lr": 0.3, "layers": 4}, {"accuracy": 0.8}),
    "r4": (1, SUCCESS, "other", {"lr": 0.4, "note": "first try"}, {}),
}


def write_sweep(store: BaseRunLogStore) -> None:
    for run_id, (hours, status, tag, params, metrics) in SWEEP.items():
        sweep_run(
            store,
            run_id,
            tag=tag,
            status=status,
            params=params,
            metrics=metrics,
            ago=timedelta(hours=hours),
            branches=3 if run_id == "r3" else 0,
        )


def client(store: BaseRunLogStore, token: str | None = None) -> TestClient:
    return TestClient(create_app(store, token=token), follow_redirects=False)


@pytest.fixture
def sweep_store(tmp_path: Path) -> BaseRunLogStore:
    store = create_store("chunked-fs", log_folder=str(tmp_path / "logs"), fsync=False)
    write_sweep(store)
    return store


def run_ids_listed(html: str) -> list[str]:
    return re.findall(r'<tr data-run-id="([^"]*)"', html)


# --- every route, its headers -----------------------------------------------------------------


def test_every_route_answers_with_the_security_headers(sweep_store: BaseRunLogStore) -> None:
    web = client(sweep_store)
    answers = {
        "/": 200,
        "/?filter=status+%3D+%27FAIL%27": 200,
        "/runs/r3": 200,
        "/runs/r3/timeline": 200,
        "/runs/r3/fragment/steps": 200,
        "/runs/r3/events": 200,
        "/compare?run=r1&run=r2": 200,
        "/static/style.css": 200,
        "/static/live.js": 200,
        "/static/timeline.css": 200,
        "/healthz": 200,
        "/runs/nope": 404,
        "/no/such/page": 404,
        "/static/nope.css": 404,
        "/compare?run=r1": 400,
        "/?filter=status+%3D": 400,
    }
    for path, status in answers.items():
        response = web.get(path)
        assert response.status_code == status, (path, response.text)
        assert_secure_headers(response)
        if response.headers["content-type"].startswith("text/html"):
            assert "Traceback" not in response.text
            assert_no_inline_code(response.text)
    assert web.get("/healthz").text == "ok"
    assert web.head("/runs/r3").status_code == 200
    assert web.get("/static/live.js").headers["content-type"].startswith("text/javascript")
    assert web.get("/static/timeline.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/", "/runs/r1", "/compare?run=r1&run=r2", "/nowhere"])
def test_nothing_but_get_and_head(sweep_store: BaseRunLogStore, method: str, path: str) -> None:
    response = client(sweep_store).request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert_secure_headers(response)
    assert len(list(sweep_store.iter_runs())) == 4  # nothing was deleted


def test_a_store_error_is_a_page_with_its_message_not_a_traceback(tmp_path: Path) -> None:
    store = create_store("file-system", log_folder=str(tmp_path / "logs"), fsync=False)
    sweep_run(store, "fine")
    (tmp_path / "logs" / "broken.json").write_text('{"run_id": "broken", "steps": [')
    web = client(store)
    response = web.get("/runs/broken")
    assert response.status_code == 500, response.text
    assert_secure_headers(response)
    assert "Traceback" not in response.text
    assert "does not hold a valid run log" in response.text
    # The runs page lists it as a run that cannot be read, beside the others.
    html = web.get("/").text
    assert sorted(run_ids_listed(html)) == ["broken", "fine"]
    assert '<td class="status status-UNREADABLE">UNREADABLE</td>' in html


# --- the runs page ----------------------------------------------------------------------------


def test_runs_page_lists_newest_first_with_status_as_text(sweep_store: BaseRunLogStore) -> None:
    html = client(sweep_store).get("/").text
    assert run_ids_listed(html) == ["r4", "r3", "r2", "r1"]
    assert '<td class="status status-FAIL">FAIL</td>' in html
    assert '<a class="run-link" href="/runs/r3">r3</a>' in html
    assert 'aria-label="Select run r3"' in html and 'form="compare-form"' in html
    assert '<p id="result-count">' in html and "Showing runs 1\u20134" in html
    assert 'id="next-page"' not in html
    assert "<time datetime=" in html
    # The map step's branches counted by status, the failed step named.
    row = html[html.index('data-run-id="r3"') :].split("</tr>")[0]
    assert "3 " in row and "2 SUCCESS, 1 FAIL" in row and ">train<" in row


def test_filter_order_columns_and_shorthands(sweep_store: BaseRunLogStore) -> None:
    web = client(sweep_store)
    assert run_ids_listed(web.get("/", params={"filter": "metrics.accuracy > 0.75"}).text) == [
        "r3",
        "r2",
    ]
    ordered = web.get("/", params={"order_by": "params.lr asc"}).text
    assert run_ids_listed(ordered) == ["r1", "r2", "r3", "r4"]
    assert run_ids_listed(web.get("/", params={"status": "FAIL"}).text) == ["r3"]
    assert run_ids_listed(web.get("/", params={"tag": "other"}).text) == ["r4"]
    assert run_ids_listed(web.get("/", params={"since": "150m"}).text) == ["r4", "r3"]
    both = web.get("/", params={"tag": "sweep", "filter": "params.layers = 2"}).text
    assert run_ids_listed(both) == ["r2", "r1"]
    columns = web.get("/", params={"columns": "params.lr,metrics.accuracy"}).text
    assert '<th scope="col" class="mono">params.lr</th>' in columns
    row = columns[columns.index('data-run-id="r2"') :].split("</tr>")[0]
    assert '<td class="mono">0.2</td>' in row and '<td class="mono">0.9</td>' in row
    row = columns[columns.index('data-run-id="r4"') :].split("</tr>")[0]
    assert '<td class="mono">-</td>' in row  # no accuracy
    # What was typed stays in the form.
    assert 'value="params.lr,metrics.accuracy"' in columns


def test_a_bad_filter_is_400_with_the_parsers_line_and_a_caret(
    sweep_store: BaseRunLogStore,
) -> None:
    response = client(sweep_store).get("/", params={"filter": "status = = 'FAIL'"})
    assert response.status_code == 400
    html = response.text
    assert '<p id="filter-error" role="alert">filter error at column 10:' in html
    pointer = re.search(r'<pre class="pointer"[^>]*>(.*?)</pre>', html, re.S)
    assert pointer is not None
    assert pointer.group(1) == "status = = &#39;FAIL&#39;\n         ^"
    assert 'value="status = = &#39;FAIL&#39;"' in html  # kept as typed
    assert 'data-run-id="' not in html
    for params in (
        {"order_by": "start_time sideways"},
        {"columns": "params.lr,nonsense"},
        {"status": "HAPPY"},
        {"since": "soon"},
        {"max_results": "0"},
        {"page_token": "not-a-token"},
    ):
        answer = client(sweep_store).get("/", params=params)
        assert answer.status_code == 400, (params, answer.text)
        assert 'id="filter-error"' in answer.text


def test_pages_follow_one_another_through_the_next_link(sweep_store: BaseRunLogStore) -> None:
    web = client(sweep_store)
    seen: list[str] = []
    path = "/?max_results=2&tag=sweep"
    pages = 0
    while path:
        html = web.get(path).text
        seen += run_ids_listed(html)
        pages += 1
        found = re.search(r'<a id="next-page" rel="next" href="([^"]+)">Next page</a>', html)
        path = found.group(1).replace("&amp;", "&") if found else ""
        if found:
            assert "page_token=" in path and "tag=sweep" in path
    assert seen == ["r3", "r2", "r1"] and pages == 2
    assert "Showing runs 1\u20133" in web.get("/?max_results=3").text


# --- a run ------------------------------------------------------------------------------------


def test_run_page_shows_the_tree_summary_and_failure(sweep_store: BaseRunLogStore) -> None:
    html = client(sweep_store).get("/runs/r3").text
    assert re.search(r"<h1>Run <span class=\"mono\">r3</span>", html)
    assert '<span id="run-status" class="status status-FAIL">FAIL</span>' in html
    assert 'data-run-id="r3" data-run-path="r3" data-live="false"' in html
    assert '<script src="/static/live.js"' not in html  # an ended run is not followed
    for section in ("summary", "steps", "parameters", "metrics", "catalog", "timeline"):
        assert f'<section id="{section}"' in html
    assert '<details class="step" data-step="train" data-status="FAIL"' in html
    assert (
        '<div class="progress" data-step="train" data-done="2" data-running="0" '
        'data-failed="1" data-total="3">'
    ) in html
    assert "2 of 3 branches done, 0 running, 1 failed" in html
    assert re.search(r"<progress [^>]*aria-label=", html)
    assert 'data-branch="train.1" data-status="FAIL"' in html
    failure = html[html.index('<div id="latest-failure"') :].split("</div>")[0]
    assert "train" in failure and "it broke" in failure
    assert "dddddddd" in html  # the dag hash
    assert '<svg class="chart"' in html  # the timeline, inline
    assert html.count("<h1>") == 1
    assert "<header" in html and "<main" in html and "<nav" in html and 'lang="en"' in html


def test_a_run_of_a_thousand_branches_draws_them_compactly(tmp_path: Path) -> None:
    store = create_store("chunked-fs", log_folder=str(tmp_path / "logs"), fsync=False)
    sweep_run(store, "wide", branches=1000)
    html = client(store).get("/runs/wide").text
    assert html.count('class="branch compact"') == 1000 - 20
    assert html.count('<details class="branch"') == 20
    assert 'data-branch="train.1" data-status="FAIL"' in html  # the failed one drawn whole
    assert '<details class="branch" data-branch="train.1"' in html
    assert "999 of 1000 branches done, 0 running, 1 failed" in html


def test_unknown_run_is_404_naming_it_escaped(sweep_store: BaseRunLogStore) -> None:
    web = client(sweep_store)
    response = web.get(f"/runs/{IMG_ID}")
    assert response.status_code == 404
    assert "<img" not in response.text
    assert f"There is no run “{escape(IMG_ID)}”" in response.text
    hostile = web.get(f"/runs/{RUN_ID}")
    assert hostile.status_code == 404 and not dangerous(hostile.text)
    assert shown_html(RUN_ID) in hostile.text
    for sub in ("/events", "/fragment/steps", "/timeline"):
        assert web.get(f"/runs/gone{sub}").status_code == 404


# --- comparing runs ---------------------------------------------------------------------------


def test_compare_two_runs_shows_what_differs_and_everything_else(
    sweep_store: BaseRunLogStore,
) -> None:
    html = client(sweep_store).get("/compare?run=r2&run=r3").text
    table = html[html.index('<table id="compare">') :].split("</table>")[0]
    assert '<a href="/runs/r2">r2</a>' in table and '<a href="/runs/r3">r3</a>' in table
    assert '<td class="status status-SUCCESS">SUCCESS</td>' in table
    assert '<td class="status status-FAIL">FAIL</td>' in table
    for row in ("params.lr", "params.layers", "metrics.accuracy"):
        assert f'data-row="{row}"' in table
    assert "lr" in html and '<table id="differences">' in html
    differences = html[html.index('<table id="differences">') :]
    assert "train" in differences  # the step statuses differ


def test_compare_three_runs_and_refusals(sweep_store: BaseRunLogStore) -> None:
    web = client(sweep_store)
    html = web.get("/compare", params=[("run", "r1"), ("run", "r2"), ("run", "r4")]).text
    assert html.count('<th scope="col" class="mono"><a href="/runs/') == 3
    assert 'data-row="params.note"' in html and 'data-row="params.layers"' in html
    assert '<table id="differences">' not in html  # two runs only
    assert web.get("/compare").status_code == 400
    assert web.get("/compare?run=r1&run=r1").status_code == 400
    missing = web.get("/compare?run=r1&run=ghost")
    assert missing.status_code == 404 and "ghost" in missing.text


# --- hostile runs -----------------------------------------------------------------------------


@pytest.fixture
def hostile_store(tmp_path: Path) -> BaseRunLogStore:
    """The hostile runs of tests/hostile, and one whose strings are HTML."""
    config = write_config(tmp_path / "config.yaml", "chunked-fs", tmp_path / "logs")
    write_hostile_run(config, RUN_ID)
    write_hostile_run(config, OTHER_ID, value="b")
    store = load_store(config)
    store.create_run_log(IMG_ID, tag=SCRIPT, dag_hash=IMG)
    store.set_parameters(
        IMG_ID,
        {
            SCRIPT: JsonParameter(kind="json", value=IMG),
            "m": MetricParameter(kind="metric", value=SCRIPT),
        },
    )
    step = store.create_step_log(SCRIPT, SCRIPT)
    step.status = FAIL
    now = datetime.now()
    step.attempts = [
        StepAttempt(status=FAIL, message=f"{SCRIPT}{IMG}", start_time=str(now), end_time=str(now))
    ]
    step.data_catalog = [DataCatalog(name=IMG, data_hash=SCRIPT, stage="put")]
    store.add_step_log(step, IMG_ID)
    store.update_run_log_status(IMG_ID, FAIL)
    return store


def _visible_and_inert(html: str, where: str) -> None:
    assert not dangerous(html), f"{where}: raw {dangerous(html)}"
    assert "<script>alert" not in html and "<img src=x" not in html, where
    assert_no_inline_code(html)


def test_hostile_strings_are_escaped_and_shown(hostile_store: BaseRunLogStore) -> None:
    web = client(hostile_store)
    pages = {
        "runs": web.get("/").text,
        "run": web.get(f"/runs/{RUN_ID}").text,
        "img run": web.get(f"/runs/{IMG_ID}").text,
        "fragment": web.get(f"/runs/{RUN_ID}/fragment/steps").text,
        "timeline": web.get(f"/runs/{IMG_ID}/timeline").text,
        "compare": web.get("/compare", params=[("run", RUN_ID), ("run", IMG_ID)]).text,
        "compare three": web.get(
            "/compare", params=[("run", RUN_ID), ("run", OTHER_ID), ("run", IMG_ID)]
        ).text,
        "filter error": web.get("/", params={"filter": f"tag = {CSI8}{BIDI}"}).text,
        "tag search": web.get("/", params={"tag": TAG}).text,
    }
    for where, html in pages.items():
        _visible_and_inert(html, where)
    run = pages["run"]
    # Every stored string made visible as runlog shows it on a terminal, then escaped.
    for stored in (RUN_ID, TAG, STEP, f"osc52{OSC52}", f"{CLEAR}a", f"c1{CSI8}", f"in{TITLE}"):
        assert shown_html(stored) in run, stored
    assert shown_html(CATALOG_NAME) in run
    assert str(escape(printable("boom" + OSC52))) in run  # the error message
    assert shown_html(f"fan{BIDI}") in run
    assert str(escape(printable(MESSAGE, lines=True))) in run
    img = pages["img run"]
    assert str(escape(SCRIPT)) in img and str(escape(IMG)) in img
    assert shown_html(RUN_ID) in pages["runs"] and shown_html(TAG) in pages["runs"]
    assert str(escape(SCRIPT)) in pages["runs"]
    # The tag shorthand matches the stored tag exactly; a row names its run as it is shown.
    assert sorted(run_ids_listed(pages["tag search"])) == sorted(
        [shown_html(OTHER_ID), shown_html(RUN_ID)]
    )
    # A checkbox holds the run id as a URL path does, and the comparison reads it so.
    boxes = re.findall(r'name="run" value="([^"]+)"', pages["runs"])
    assert len(boxes) == 3
    compared = web.get("/compare", params=[("run", box) for box in boxes])  # as a form sends
    assert compared.status_code == 200
    assert shown_html(RUN_ID) in compared.text and str(escape(IMG_ID)) in compared.text


def test_hostile_strings_in_the_live_state_are_shown(hostile_store: BaseRunLogStore) -> None:
    events = client(hostile_store).get(f"/runs/{RUN_ID}/events").text
    assert not dangerous(events)
    data = json.loads(events.split("data: ", 1)[1].split("\n", 1)[0])
    assert data["ended"] is True
    assert data["latest_failure"]["step"] == printable(STEP)
    assert not dangerous(json.dumps(data, ensure_ascii=False))


# --- the token --------------------------------------------------------------------------------


def test_token_rules(sweep_store: BaseRunLogStore) -> None:
    token = "s3cret-token"
    web = client(sweep_store, token=token)
    refused = web.get("/")
    assert refused.status_code == 403 and "URL" in refused.text
    assert_secure_headers(refused)
    assert web.get("/static/style.css").status_code == 403
    assert web.get("/?token=wrong").status_code == 403
    assert web.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert web.get("/healthz").status_code == 200  # says "ok", nothing else
    admitted = web.get(f"/runs/r1?token={token}&x=1")
    assert admitted.status_code == 303
    assert admitted.headers["location"] == "/runs/r1?x=1"
    cookie = admitted.headers["set-cookie"]
    assert token in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert_secure_headers(admitted)
    # The test client keeps the cookie, as a browser does.
    assert web.get("/runs/r1").status_code == 200
    assert web.get("/static/style.css").status_code == 200
    fresh = client(sweep_store, token=token)
    assert fresh.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # The cookie is the port's own: another server's on this host is not taken for it.
    by_cookie = client(sweep_store, token=token)
    by_cookie.cookies.set("runlog_token_80", token)
    assert by_cookie.get("/").status_code == 200
    other_port = client(sweep_store, token=token)
    other_port.cookies.set("runlog_token_8765", token)
    assert other_port.get("/").status_code == 403


def test_a_loopback_server_answers_only_requests_addressed_to_the_loopback(
    sweep_store: BaseRunLogStore,
) -> None:
    """A page from elsewhere that points its own host name at 127.0.0.1 (DNS rebinding) names
    that host in its requests: refused, with the headers."""
    app = create_app(sweep_store, loopback_only=True)
    for base in ("http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"):
        answer = TestClient(app, base_url=base).get("/runs/r1")
        assert answer.status_code == 200, base
    for base in ("http://rebound.example", "http://127.0.0.1.rebound.example:8765"):
        refused = TestClient(app, base_url=base).get("/runs/r1")
        assert refused.status_code == 403 and "loopback" in refused.text, base
        assert_secure_headers(refused)
    # A server bound elsewhere (behind its token) answers whatever name it is reached by.
    assert (
        TestClient(create_app(sweep_store), base_url="http://runs.lan").get("/").status_code == 200
    )


def test_the_token_redirect_stays_on_this_server(sweep_store: BaseRunLogStore) -> None:
    """``//host/...?token=`` must not send the browser to another host once admitted."""
    import asyncio

    app = create_app(sweep_store, token="t0ken")
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "//elsewhere.example/x",
        "raw_path": b"//elsewhere.example/x",
        "query_string": b"token=t0ken",
        "headers": [(b"host", b"127.0.0.1:8765")],
        "server": ("127.0.0.1", 8765),
        "client": ("127.0.0.1", 5000),
        "root_path": "",
    }
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    assert start["status"] == 303
    location = dict(start["headers"])[b"location"].decode()
    assert location == "/elsewhere.example/x", location


# --- every store type and a project's folder --------------------------------------------------


def test_every_store_type_serves_its_runs(store: BaseRunLogStore) -> None:
    write_sweep(store)
    web = client(store)
    assert sorted(run_ids_listed(web.get("/").text)) == ["r1", "r2", "r3", "r4"]
    run = web.get("/runs/r3")
    assert run.status_code == 200 and "2 of 3 branches done, 0 running, 1 failed" in run.text
    assert web.get("/compare?run=r1&run=r3").status_code == 200
    assert run_ids_listed(web.get("/?filter=params.lr+%3E+0.25").text) == ["r4", "r3"]


def test_a_projects_folder_of_both_layouts_with_no_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / ".run_log_store"
    shutil.copytree(RUNNABLE_FIXTURES / "chunked-fs", folder)
    for document in (RUNNABLE_FIXTURES / "file-system").glob("*.json"):
        shutil.copy(document, folder / document.name)
    monkeypatch.chdir(tmp_path)
    web = client(ProjectRunLogStore(fsync=False))
    html = web.get("/").text
    listed = run_ids_listed(html)
    assert sorted(listed) == ["chunked-map", "fs-fail", "fs-job", "fs-map"]
    assert "<td>chunked-fs</td>" in html and "<td>file-system</td>" in html
    for run_id in listed:
        page = web.get(f"/runs/{run_id}")
        assert page.status_code == 200, page.text
        assert '<section id="steps"' in page.text
    assert web.get("/compare?run=fs-map&run=chunked-map").status_code == 200


# --- the command ------------------------------------------------------------------------------


class Served:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    @property
    def base(self) -> str:
        return self.url.split("?", 1)[0]


@contextlib.contextmanager
def serving(*args: str, cwd: Path) -> Iterator[Served]:
    """``runlog serve ARGS`` as a process, with the URL it printed; interrupted at the end,
    which must end it with status 0."""
    env = {k: v for k, v in os.environ.items() if k != "RUNNABLE_CONFIGURATION_FILE"}
    process = subprocess.Popen(
        [RUNLOG, "serve", "--port", "0", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.match(r"runlog serve: (http://\S+) \(store: (.*)\)$", line.strip())
        assert found, (line, process.stderr.read() if process.stderr else "")
        yield Served(process, found.group(1))
    finally:
        process.send_signal(2)  # SIGINT, as Ctrl-C
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert process.stderr is not None
        errors = process.stderr.read()
        assert code == 0, errors
        assert "Traceback" not in errors


def wait_healthy(base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx2.get(f"{base}healthz", timeout=5).text == "ok":
                return
        except httpx2.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def test_serve_prints_its_url_and_serves(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", "chunked-fs", tmp_path / "logs")
    write_sweep(load_store(config))
    with serving("-c", str(config), cwd=tmp_path) as served:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", served.url)
        assert int(served.url.rsplit(":", 1)[1].strip("/")) > 0
        wait_healthy(served.base)
        page = httpx2.get(served.base, timeout=30)
        assert page.status_code == 200 and sorted(run_ids_listed(page.text)) == [
            "r1",
            "r2",
            "r3",
            "r4",
        ]
        assert page.headers["content-security-policy"] == CSP
        # Bound to the loopback, it answers only requests addressed to it (DNS rebinding).
        rebound = httpx2.get(served.base, headers={"Host": "rebound.example"}, timeout=30)
        assert rebound.status_code == 403


def test_serve_on_any_address_needs_its_token(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", "chunked-fs", tmp_path / "logs")
    write_sweep(load_store(config))
    with serving("-c", str(config), "--host", "0.0.0.0", cwd=tmp_path) as served:
        found = re.fullmatch(r"http://0\.0\.0\.0:(\d+)/\?token=([\w-]{40,})", served.url)
        assert found, served.url
        base = f"http://127.0.0.1:{found.group(1)}/"
        wait_healthy(base)
        assert httpx2.get(base, timeout=30).status_code == 403
        assert httpx2.get(f"{base}runs/r1", timeout=30).status_code == 403
        with httpx2.Client(timeout=30) as browser:
            page = browser.get(f"{base}?token={found.group(2)}", follow_redirects=True)
            assert page.status_code == 200 and "r1" in run_ids_listed(page.text)
            assert browser.get(f"{base}runs/r1").status_code == 200  # by the cookie
        bearer = {"Authorization": f"Bearer {found.group(2)}"}
        assert httpx2.get(base, headers=bearer, timeout=30).status_code == 200
    with serving("-c", str(config), "--host", "0.0.0.0", "--no-token", cwd=tmp_path) as served:
        assert "token" not in served.url
        base = f"http://127.0.0.1:{served.base.rsplit(':', 1)[1]}"
        wait_healthy(base)
        assert httpx2.get(base, timeout=30).status_code == 200


def test_serve_refuses_contradictory_token_options(tmp_path: Path) -> None:
    done = subprocess.run(
        [RUNLOG, "serve", "--token", "x", "--no-token"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--no-token" in done.stderr


def test_a_run_is_followed_live_while_it_is_written(tmp_path: Path) -> None:
    """A real server, a real writer: the events say each change of the run, the map's branches
    counted as they end, then the end, after which the stream closes."""
    config = write_config(tmp_path / "config.yaml", "chunked-fs", tmp_path / "logs")
    store = load_store(config)
    store.create_run_log("live", status=PROCESSING)
    fan = store.create_step_log("fan", "fan")
    fan.step_type, fan.status = "map", PROCESSING
    store.add_step_log(fan, "live")
    branches = 4

    def write() -> None:
        for index in range(branches):
            time.sleep(0.8)
            branch = store.create_branch_log(f"fan.{index}")
            branch.status = FAIL if index == 2 else SUCCESS
            store.add_branch_log(branch, "live")
            if index == 2:
                step = store.create_step_log("work", f"fan.{index}.work")
                step.status = FAIL
                now = str(datetime.now())
                step.attempts = [
                    StepAttempt(status=FAIL, message="branch 2 broke", start_time=now, end_time=now)
                ]
                store.add_step_log(step, "live")
        time.sleep(0.8)
        fan.status = FAIL
        store.add_step_log(fan, "live")
        store.update_run_log_status("live", FAIL)

    with serving("-c", str(config), cwd=tmp_path) as served:
        wait_healthy(served.base)
        page = httpx2.get(f"{served.base}runs/live", timeout=30).text
        assert 'data-live="true"' in page and '<script src="/static/live.js"' in page
        states: list[dict[str, Any]] = []
        writer = threading.Thread(target=write)
        with httpx2.stream("GET", f"{served.base}runs/live/events", timeout=60) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            writer.start()
            event = ""
            for line in stream.iter_lines():  # ends when the server closes the stream
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: ") and event == "state":
                    states.append(json.loads(line[len("data: ") :]))
        writer.join()
    assert states[0]["status"] == PROCESSING and states[0]["ended"] is False
    assert states[-1]["status"] == FAIL and states[-1]["ended"] is True
    done = [s["steps"][0]["progress"]["done"] for s in states if s["steps"][0]["progress"]]
    assert done == sorted(done) and len(set(done)) >= 3, states
    assert states[-1]["steps"][0]["progress"] == {
        "done": 3,
        "running": 0,
        "failed": 1,
        "total": 4,
    }
    assert states[-1]["latest_failure"] == {"step": "fan.2.work", "message": "branch 2 broke"}
    assert states[-1]["branches_by_status"] == {"SUCCESS": 3, "FAIL": 1}
    assert states[-1]["steps"][0]["branches_text"] == "4 branches: 3 SUCCESS, 1 FAIL"
    # Only changes are sent.
    assert all(a != b for a, b in itertools.pairwise(states))
