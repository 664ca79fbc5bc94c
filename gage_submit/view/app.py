"""The web view's Starlette application: pages, JSON, event streams and actions.

Pages are rendered on the server (Jinja2, autoescaped) so the first page
of the runs table comes in one response; scripts from `static/` then keep
them live over server-sent events (`/events/...`), setting only
`textContent`. Every handler that reads the runs dir is a plain function,
which Starlette runs in its thread pool; the event streams poll `live`'s
watchers there too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gage_queue.states import CANCELLABLE, RunState
from gage_queue.text import BadText, check_user_text

from . import data
from .guard import SECURITY_HEADERS, Guard
from .live import PoolWatch, RowsWatch, RunWatch

HERE = os.path.dirname(os.path.abspath(__file__))
KEEPALIVE_SECONDS = 15.0
MAX_COMPARED = 200


@dataclass(frozen=True)
class ViewConfig:
    runs_dir: str
    guard: Guard
    namespace: str | None = None
    poll: float = 0.5  # seconds between two looks at the runs dir, per open stream


def plotly_js_path() -> str | None:
    """plotly.js as the plotly package ships it (`package_data/plotly.min.js`)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "package_data", "plotly.min.js")
    return path if os.path.isfile(path) else None


def make_app(config: ViewConfig) -> Starlette:
    view = _View(config)
    routes = [
        Route("/", view.runs),
        Route("/api/runs", view.api_runs),
        Route("/events/runs", view.events_runs),
        Route("/runs/{run_id}", view.run),
        Route("/runs/{run_id}/file", view.file),
        Route("/api/runs/{run_id}", view.api_run),
        Route("/events/runs/{run_id}", view.events_run),
        Route("/api/runs/{run_id}/cancel", view.cancel, methods=["POST"]),
        Route("/api/runs/{run_id}/label", view.label, methods=["POST"]),
        Route("/compare", view.compare),
        Route("/api/compare", view.api_compare),
        Route("/compare.csv", view.compare_csv),
        Route("/pool", view.pool),
        Route("/api/pool", view.api_pool),
        Route("/events/pool", view.events_pool),
        Route("/vendor/plotly.min.js", view.plotly_js),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={
        data.NotFound: view.not_found, data.Refused: view.refused, 404: view.not_found,
    })
    app.state.view = view
    return _Guarded(app, config.guard, view)


class _View:
    def __init__(self, config: ViewConfig):
        self.config = config
        self.runs_dir = config.runs_dir
        self.namespace = config.namespace
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
            autoescape=True, trim_blocks=True, lstrip_blocks=True,
        )

    # -- pages

    def page(self, name: str, status_code: int = 200, *, trusted: bool = True,
             **context: Any) -> HTMLResponse:
        """A page; `trusted` (the request passed the access check) gives it the actions
        token when actions are on."""
        template = self.templates.get_template(name)
        html = template.render(
            actions_token=self.config.guard.actions_token if trusted else None,
            runs_dir=data.text(self.runs_dir) if trusted else "", **context)
        return HTMLResponse(html, status_code, headers={"cache-control": "no-store"})

    def runs(self, request: Request) -> Response:
        query = data.RunsQuery.parse(request.query_params)
        page = data.runs_page(self.runs_dir, query, self.namespace)
        return self.page("runs.html", page=page, query=query, columns=data.COLUMNS,
                         statuses=[s.value for s in RunState], link=_link(query),
                         sort_link=_sort_link(query))

    def run(self, request: Request) -> Response:
        run = data.find_run(self.runs_dir, request.path_params["run_id"])
        detail = data.run_detail(run, self.namespace)
        files, cut = data.run_files(run)
        return self.page("run.html", run=detail, files=files, files_cut=cut,
                         cancellable=detail["status"] in {s.value for s in CANCELLABLE})

    def file(self, request: Request) -> Response:
        run = data.find_run(self.runs_dir, request.path_params["run_id"])
        path = request.query_params.get("path", "")
        view = data.read_run_file(run, path)
        return self.page("file.html", run={"id": run.id, "name": data.text(run.name)},
                         file=view)

    def compare(self, request: Request) -> Response:
        runs = self._compared(request)
        table = data.compare_table(runs, self.namespace)
        ids = [("run", run.id) for run in runs]
        return self.page("compare.html", table=table, csv_link="/compare.csv?" + urlencode(ids),
                         plots=plotly_js_path() is not None)

    def pool(self, request: Request) -> Response:
        return self.page("pool.html", pool=data.pool_snapshot(self.runs_dir))

    def not_found(self, request: Request, exc: Exception) -> Response:
        message = str(exc) if isinstance(exc, data.NotFound) else "no such page"
        return self._error(request, 404, message)

    def refused(self, request: Request, exc: Exception) -> Response:
        return self._error(request, 403, f"refused: {exc}")

    def _error(self, request: Request, code: int, message: str) -> Response:
        if request.url.path.startswith(("/api/", "/events/")):
            return JSONResponse({"error": message}, code)
        return self.page("error.html", code, code=code, message=message)

    # -- JSON

    def api_runs(self, request: Request) -> Response:
        query = data.RunsQuery.parse(request.query_params)
        page = data.runs_page(self.runs_dir, query, self.namespace)
        return JSONResponse({"rows": page.rows, "total": page.total, "pages": page.pages,
                             "page": query.page})

    def api_run(self, request: Request) -> Response:
        run = data.find_run(self.runs_dir, request.path_params["run_id"])
        return JSONResponse(data.run_detail(run, self.namespace))

    def api_compare(self, request: Request) -> Response:
        return JSONResponse(data.compare_table(self._compared(request), self.namespace))

    def compare_csv(self, request: Request) -> Response:
        csv_text = data.compare_csv(self._compared(request), self.namespace)
        return PlainTextResponse(csv_text, media_type="text/csv", headers={
            "content-disposition": 'attachment; filename="compare.csv"'})

    def api_pool(self, request: Request) -> Response:
        return JSONResponse(data.pool_snapshot(self.runs_dir))

    def plotly_js(self, request: Request) -> Response:
        path = plotly_js_path()
        if path is None:
            return PlainTextResponse("plotly is not installed: pip install 'gage-queue[view]'",
                                     404)
        return FileResponse(path, media_type="text/javascript",
                            headers={"cache-control": "max-age=86400"})

    def _compared(self, request: Request) -> list:
        ids = request.query_params.getlist("run")[:MAX_COMPARED]
        return data.compare_runs(self.runs_dir, ids)

    # -- actions

    def cancel(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal:
            return refusal
        from gage_queue.cancel import request_cancel

        run = data.find_run(self.runs_dir, request.path_params["run_id"])
        state = request_cancel(run)
        asked = state in CANCELLABLE
        return JSONResponse({"status": state.value, "requested": asked},
                            200 if asked else 409)

    async def label(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal:
            return refusal
        body = await request.body()
        try:
            label = json.loads(body[:4096]).get("label")
        except (ValueError, AttributeError):
            label = None
        if not isinstance(label, str):
            return JSONResponse({"error": "send {\"label\": TEXT}"}, 400)
        try:
            label = check_user_text(label.strip(), "label")
        except BadText as e:
            return JSONResponse({"error": str(e)}, 400)
        return await run_in_threadpool(self._set_label, request.path_params["run_id"], label)

    def _set_label(self, run_id: str, label: str) -> Response:
        from gage_runs.sidecars import log_user_attrs

        run = data.find_run(self.runs_dir, run_id)
        if label:
            log_user_attrs(run, {"label": label})
        else:
            log_user_attrs(run, {}, delete=["label"])
        return JSONResponse({"label": label})

    def _refusal(self, request: Request) -> Response | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        why = self.config.guard.action_refusal(headers, request.headers.get("host"))
        return None if why is None else JSONResponse({"error": why}, 403)

    # -- event streams

    async def events_runs(self, request: Request) -> Response:
        ids = request.query_params.getlist("id")
        watch = await run_in_threadpool(RowsWatch, self.runs_dir, ids, self.namespace)

        async def changes() -> AsyncIterator[str]:
            rows, listing = await run_in_threadpool(watch.poll)
            for changed in rows:
                yield _event("row", changed)
            if listing:
                yield _event("listing", {})

        return self._stream(request, changes)

    async def events_run(self, request: Request) -> Response:
        run = await run_in_threadpool(data.find_run, self.runs_dir,
                                      request.path_params["run_id"])
        watch = RunWatch(run, self.namespace)
        last = request.headers.get("last-event-id", "")
        resume = int(last) if last.isdigit() else None
        started = False

        async def changes() -> AsyncIterator[str]:
            nonlocal started
            detail = await run_in_threadpool(watch.detail)
            if detail is not None:
                yield _event("detail", detail)
            if not started:
                started = True
                if resume is None:
                    text = await run_in_threadpool(watch.output.tail)
                    yield _event("output", {"text": text, "reset": True}, watch.output.offset)
                    return
                text = await run_in_threadpool(watch.output.since, resume)
            else:
                text = await run_in_threadpool(watch.output.more)
            if text:
                yield _event("output", {"text": text}, watch.output.offset)

        return self._stream(request, changes)

    async def events_pool(self, request: Request) -> Response:
        watch = PoolWatch(self.runs_dir)

        async def changes() -> AsyncIterator[str]:
            pool = await run_in_threadpool(watch.poll)
            if pool is not None:
                yield _event("pool", pool)

        return self._stream(request, changes, interval=1.0)

    def _stream(self, request: Request, changes: Callable[[], AsyncIterator[str]],
                interval: float | None = None) -> Response:
        interval = self.config.poll if interval is None else interval

        async def stream() -> AsyncIterator[str]:
            yield "retry: 1000\n\n"
            quiet = 0.0
            while not await request.is_disconnected():
                said = False
                async for event in changes():
                    said = True
                    yield event
                quiet = 0.0 if said else quiet + interval
                if quiet >= KEEPALIVE_SECONDS:
                    quiet = 0.0
                    yield ": keepalive\n\n"
                await asyncio.sleep(interval)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store"})


def _event(name: str, payload: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(payload)}\n\n"


def _link(query: data.RunsQuery) -> Callable[..., str]:
    def link(**changes: Any) -> str:
        pairs = query.params(**changes)
        return "/?" + urlencode(pairs) if pairs else "/"

    return link


def _sort_link(query: data.RunsQuery) -> Callable[[str], str]:
    """The link a column's header sorts by: this column, the other way if it is the sort."""
    def link(column: str) -> str:
        if query.sort.lstrip("-") == column:
            sort = column if query.sort.startswith("-") else "-" + column
        else:
            sort = "-" + column if column in ("started", "time") else column
        return _link(query)(sort=sort, page=1)

    return link


class _Guarded:
    """The access rules of `guard.Guard` and its headers, around the whole app."""

    def __init__(self, app: ASGIApp, guard: Guard, view: _View):
        self.app = app
        self.guard = guard
        self.view = view

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", [])
                           if h[0].lower() not in {name for name, _ in SECURITY_HEADERS}]
                message = {**message, "headers": [*headers, *SECURITY_HEADERS]}
            await send(message)

        request = Request(scope)
        response = self._check(request)
        if response is not None:
            await response(scope, receive, send_guarded)
            return
        await self.app(scope, receive, send_guarded)

    def _check(self, request: Request) -> Response | None:
        guard = self.guard
        if not guard.host_allowed(request.headers.get("host")):
            return PlainTextResponse("this server answers only to a loopback host name", 403)
        if guard.token is None:
            return None
        given = request.query_params.get("token")
        if given is not None and guard.token_ok(given):
            pairs = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = URL(path=request.url.path, query=urlencode(pairs))
            response = RedirectResponse(str(target), 303)
            response.set_cookie(guard.cookie_name, guard.token, httponly=True,
                                samesite="strict", path="/")
            return response
        if guard.token_ok(request.cookies.get(guard.cookie_name)):
            return None
        message = ("this view needs its token: open the URL with ?token=... that "
                   "gage-submit view printed when it started")
        if request.url.path.startswith(("/api/", "/events/")) or request.method != "GET":
            return JSONResponse({"error": message}, 403)
        return self.view.page("error.html", 403, trusted=False, code=403, message=message)
