"""``runlog serve``: the runs of a store in a browser, read-only.

An ASGI application (Starlette) over the library: the runs page is one ``search_runs`` page,
a run is ``get_run_log_by_id``, a comparison is ``ops.diff``; a run still being written is
followed by server-sent events. Every store read runs in a worker thread, so that a slow read
(a run of thousands of branches, a store on a server) holds up neither the other pages nor the
live streams.

Everything a run holds is written by whoever can write to the store: the templates escape it
(Jinja's autoescape) and show its control and bidi characters as text. No page runs an inline
script or style (the Content-Security-Policy forbids them), every asset is served from the
package, and only GET and HEAD exist: nothing a page does can change the store.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from runlog_store.cli.render import format_seconds, printable
from runlog_store.exceptions import (
    InvalidRunIdError,
    RunLogNotFoundError,
    RunLogStoreError,
    StorageError,
)
from runlog_store.serve import views
from runlog_store.stores.base import BaseRunLogStore

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
# How often a live page's run is read again, in seconds.
POLL_INTERVAL = 0.5
# A comment on an idle event stream this often keeps proxies from closing it.
KEEPALIVE = 15.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shown"] = views.shown
    env.filters["lines"] = lambda text: printable(str(text), lines=True)
    env.filters["path"] = lambda text: quote(str(text), safe="")
    env.filters["status_class"] = views.status_class
    env.filters["counts"] = views.counts_text
    env.globals["ENDED"] = views.ENDED
    env.filters["utc"] = views.utc
    env.filters["seconds"] = lambda value: "-" if value is None else format_seconds(value)
    env.globals["column_value"] = views.column_value
    return env


class _Pages:
    """The routes' handlers, over one store."""

    def __init__(self, store: BaseRunLogStore, poll_interval: float) -> None:
        self.store = store
        self.env = _environment()
        self.poll_interval = poll_interval
        self.where = store.location()

    async def page(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        """A template rendered in a worker thread: a run of thousands of branches takes a
        while to draw, and the event loop serves the others meanwhile."""

        def render() -> str:
            return self.env.get_template(template).render(where=self.where, **context)

        return HTMLResponse(await run_in_threadpool(render), status_code=status_code)

    async def error(self, status_code: int, title: str, message: str) -> HTMLResponse:
        return await self.page("error.html", status_code, title=title, message=message)

    async def store_error(self, exc: RunLogStoreError, run_id: str | None = None) -> HTMLResponse:
        """A store that failed: its message, never a traceback. A run that is not there (or
        whose id cannot be one) is 404; a store that cannot be reached 503; the rest 500."""
        if isinstance(exc, RunLogNotFoundError | InvalidRunIdError):
            name = run_id if run_id is not None else exc.run_id
            return await self.error(
                404, "No such run", f"There is no run “{name}” in {self.where}."
            )
        if isinstance(exc, StorageError):
            return await self.error(503, "The store cannot be read", str(exc))
        return await self.error(500, "The store failed", str(exc))

    async def runs(self, request: Request) -> Response:
        params = request.query_params
        first = params.get("first", "1")
        form = views.RunsForm(
            filter=params.get("filter", ""),
            order_by=params.get("order_by", ""),
            columns=params.get("columns", ""),
            max_results=params.get("max_results", ""),
            status=params.get("status", ""),
            tag=params.get("tag", ""),
            since=params.get("since", ""),
            page_token=params.get("page_token", ""),
            first=int(first) if first.isdigit() and int(first) > 0 else 1,
        )
        try:
            page = await run_in_threadpool(views.runs_page, self.store, form)
        except RunLogStoreError as exc:
            return await self.store_error(exc)
        return await self.page("runs.html", 400 if page.error else 200, page=page)

    async def _run_log(self, run_id: str) -> Any:
        return await run_in_threadpool(self.store.get_run_log_by_id, run_id, True)

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            run_log = await self._run_log(run_id)
            page = await run_in_threadpool(views.run_page, run_log)
        except RunLogStoreError as exc:
            return await self.store_error(exc, run_id)
        return await self.page("run.html", page=page)

    async def timeline(self, request: Request) -> Response:
        from runlog_store.cli.timeline import timeline_parts

        run_id = request.path_params["run_id"]
        try:
            run_log = await self._run_log(run_id)
            _, chart = await run_in_threadpool(timeline_parts, run_log)
        except RunLogStoreError as exc:
            return await self.store_error(exc, run_id)
        # The chart is the timeline module's HTML, every stored string in it escaped there.
        return await self.page("timeline.html", run_id=run_id, chart=chart)

    async def timeline_fragment(self, request: Request) -> Response:
        """The chart alone, for a run page that draws it after it has loaded (a run too large
        to draw within the page's own time: ``views.TIMELINE_ROWS``)."""
        from runlog_store.cli.timeline import timeline_parts

        run_id = request.path_params["run_id"]
        try:
            run_log = await self._run_log(run_id)
            _, chart = await run_in_threadpool(timeline_parts, run_log)
        except RunLogStoreError as exc:
            return await self.store_error(exc, run_id)
        return await self.page("timeline_fragment.html", chart=chart)

    async def steps_fragment(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            run_log = await self._run_log(run_id)
            steps = await run_in_threadpool(views.steps_of, run_log)
        except RunLogStoreError as exc:
            return await self.store_error(exc, run_id)
        return await self.page("steps_fragment.html", steps=steps)

    async def events(self, request: Request) -> Response:
        """The run's state as server-sent events: at once, then whenever it changes (read
        every ``poll_interval``); when the run has ended, one last state and the end."""
        run_id = request.path_params["run_id"]
        try:
            first = await run_in_threadpool(views.live_state, await self._run_log(run_id))
        except RunLogStoreError as exc:
            return await self.store_error(exc, run_id)

        async def stream() -> AsyncIterator[str]:
            state: dict[str, Any] | None = first
            sent: dict[str, Any] | None = None
            quiet = 0.0
            while True:
                if state is not None and state != sent:
                    yield f"event: state\ndata: {json.dumps(state)}\n\n"
                    sent, quiet = state, 0.0
                    if state["ended"]:
                        return
                elif quiet >= KEEPALIVE:
                    yield ": still here\n\n"
                    quiet = 0.0
                await asyncio.sleep(self.poll_interval)
                quiet += self.poll_interval
                try:
                    state = await run_in_threadpool(views.live_state, await self._run_log(run_id))
                except Exception:
                    # A read that met the run mid-write or mid-fold, or a store gone for a
                    # moment: the next one tells; the page keeps what it shows. Whatever went
                    # wrong, ending the stream here would leave the page stale for good.
                    state = None

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def compare(self, request: Request) -> Response:
        # A run is named as in a URL's path, percent-encoded: the runs page's checkboxes hold
        # the ids so, as a page must not hold a stored control character raw. A plain id is
        # the same either way.
        run_ids = list(dict.fromkeys(unquote(r) for r in request.query_params.getlist("run")))
        if len(run_ids) < 2:
            named = f" ({len(run_ids)} selected)" if run_ids else " (none selected)"
            return await self.error(
                400,
                "Select two runs or more",
                f"A comparison needs two runs or more{named}: tick them on the runs page.",
            )
        try:
            page = await run_in_threadpool(views.compare_page, self.store, run_ids)
        except RunLogStoreError as exc:
            return await self.store_error(exc)
        return await self.page("compare.html", page=page, run_ids=run_ids)

    async def timeline_css(self, request: Request) -> Response:
        from runlog_store.cli.timeline import timeline_css

        return Response(
            timeline_css(), media_type="text/css", headers={"Cache-Control": "no-cache"}
        )

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return await self.error(404, "Not found", f"There is no page “{request.url.path}”.")


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


class _Guard:
    """Around the whole application: the security headers on every response, errors as pages
    (never a traceback), only GET and HEAD, and the token when there is one.

    With a token, a request carrying it as ``?token=`` gets it as a cookie and is sent on to
    the same URL without it (it leaves the address bar and the history); later requests are
    let in by the cookie or an ``Authorization: Bearer`` header. /healthz needs no token: it
    says "ok" and nothing else.
    """

    def __init__(self, app: ASGIApp, token: str | None, loopback_only: bool = False) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message["headers"] = headers
            await send(message)

        if scope["method"] not in ("GET", "HEAD"):
            await self._plain(secured, 405, "Only GET and HEAD: nothing here changes the store.")
            return
        if self.loopback_only and not _addressed_to_loopback(scope):
            # A page elsewhere can point its own host name at 127.0.0.1 (DNS rebinding) and
            # read what a loopback server answers; the browser still names that host.
            await self._plain(
                secured,
                403,
                "This server answers only requests addressed to this machine's loopback "
                "(127.0.0.1, localhost, ::1).",
            )
            return
        guarded = self.token is not None and scope["path"] != "/healthz"
        if guarded and not await self._admitted(scope, secured):
            return
        try:
            await self.app(scope, receive, secured)
        except Exception:
            if started:
                raise
            await self._plain(secured, 500, "The server failed to answer this request.")

    async def _admitted(self, scope: Scope, send: Send) -> bool:
        assert self.token is not None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [value for name, value in query if name == "token"]
        cookie_name = _cookie_name(scope)
        if given:
            if not secrets.compare_digest(given[-1].encode(), self.token.encode()):
                await self._refused(send)
                return False
            rest = urlencode([(name, value) for name, value in query if name != "token"])
            # One leading slash: "//host/..." would send the browser to another host.
            location = "/" + quote(scope["path"]).lstrip("/") + (f"?{rest}" if rest else "")
            cookie = (f"{cookie_name}={self.token}; HttpOnly; SameSite=Strict; Path=/").encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [(b"location", location.encode()), (b"set-cookie", cookie)],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return False
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        offered: list[str] = []
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        if authorization.lower().startswith("bearer "):
            offered.append(authorization[7:].strip())
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # a cookie header we cannot read is no token
            jar = SimpleCookie()
        if cookie_name in jar:
            offered.append(jar[cookie_name].value)
        if any(secrets.compare_digest(o.encode(), self.token.encode()) for o in offered):
            return True
        await self._refused(send)
        return False

    async def _refused(self, send: Send) -> None:
        await self._plain(
            send,
            403,
            "This server needs its token: open the URL runlog serve printed when it started "
            "(it ends with ?token=...).",
        )

    @staticmethod
    async def _plain(send: Send, status: int, text: str) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        if status == 405:
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": text.encode() + b"\n"})


def _addressed_to_loopback(scope: Scope) -> bool:
    """Whether the request's Host header names the loopback: ``localhost`` or a loopback
    address (127.0.0.0/8, ::1), with any port."""
    host = ""
    for name, value in scope.get("headers", []):
        if name.lower() == b"host":
            host = value.decode("latin-1").strip().lower()
            break
    if host.startswith("["):  # [::1]:8765
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _cookie_name(scope: Scope) -> str:
    """The token's cookie, one per port: a browser sends a host's cookies to all its ports,
    and two servers on one machine must not take each other's token."""
    server = scope.get("server") or ("", 0)
    return f"runlog_token_{server[1] or 0}"


def create_app(
    store: BaseRunLogStore,
    *,
    token: str | None = None,
    loopback_only: bool = False,
    poll_interval: float = POLL_INTERVAL,
) -> Starlette:
    """The application over ``store``: read-only; with ``token``, only for who has it; with
    ``loopback_only`` (a server bound to the loopback), only for requests whose Host header
    names the loopback, so that a web page cannot reach it through a host name of its own
    that resolves to 127.0.0.1 (DNS rebinding)."""
    pages = _Pages(store, poll_interval)
    routes = [
        Route("/", pages.runs, methods=["GET", "HEAD"]),
        Route("/healthz", _healthz, methods=["GET", "HEAD"]),
        Route("/runs/{run_id}", pages.run, methods=["GET", "HEAD"]),
        Route("/runs/{run_id}/events", pages.events, methods=["GET"]),
        Route("/runs/{run_id}/timeline", pages.timeline, methods=["GET", "HEAD"]),
        Route("/runs/{run_id}/fragment/steps", pages.steps_fragment, methods=["GET", "HEAD"]),
        Route("/runs/{run_id}/fragment/timeline", pages.timeline_fragment, methods=["GET", "HEAD"]),
        Route("/compare", pages.compare, methods=["GET", "HEAD"]),
        Route("/static/timeline.css", pages.timeline_css, methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    # The guard is the outermost middleware of the application's own: Starlette's answers to
    # a path or a method it does not know pass through it and get the headers too.
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, token=token, loopback_only=loopback_only)],
        exception_handlers={404: pages.not_found},
    )
    app.state.store = store
    return app


__all__ = ["CSP", "create_app"]
