"""The board's Starlette app: the page, the JSON API under ``/api``, the security rules.

Security (the board can retry, kill and delete tasks):

* A ``token``, when set, is required on every request: ``Authorization:
  Bearer <token>``, or the cookie set by opening ``/?token=<token>`` once
  (HttpOnly, SameSite=Strict). :mod:`._server` refuses to bind anything but
  loopback without one. Without a token only loopback ``Host`` names are
  accepted, so a web page cannot reach the board by DNS rebinding.
* Actions are POSTs that must carry the page's ``X-CSRF-Token`` (a random
  secret a cross-site page cannot read) and, when the browser sends them, a
  same-origin ``Origin`` and ``Sec-Fetch-Site``.
* Values are never written into HTML by the server; the page's script writes
  them with ``textContent``. A Content-Security-Policy allows scripts from the
  board only, so even an injected tag would not run.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import logging
import secrets
from importlib import resources
from typing import Any

import orjson
import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._errors import StorageError
from .._ops import _actions as actions
from .._ops._errors import ExitCode, OperationError
from .._ops._store import describe
from .._status import Status
from ..backends._capabilities import Delete, Kill, ListQueues, ListWorkers, ResumeById
from ._hosts import host_of, is_loopback
from ._openapi import OPENAPI
from ._throughput import Throughput

__all__ = ["close_app", "create_app", "sample_throughput"]

logger = logging.getLogger("pyapalis.board")

TOKEN_COOKIE = "pyapalis_board"
CSRF_HEADER = "x-csrf-token"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
MAX_QUEUE_HANDLES = 64
"""Handles on other queues the board keeps open at most (each names a queue)."""
HTTP_STATUS = {
    ExitCode.USAGE: 400,
    ExitCode.NOT_FOUND: 404,
    ExitCode.CONFLICT: 409,
    ExitCode.UNSUPPORTED: 501,
    ExitCode.FAILURE: 503,
}


class JSON(Response):
    """A JSON response (orjson; values JSON cannot hold become strings), never cached."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)


def _error(message: str, status_code: int) -> JSON:
    return JSON({"error": message}, status_code=status_code)


class _Board:
    """The endpoints, bound to one opened backend and the handles on its other queues.

    Every endpoint takes ``?queue=NAME`` (default: the URL's queue); a handle
    on another queue (``backend.queue(name)``) is opened on first use and
    kept until :meth:`aclose`.
    """

    def __init__(self, backend: Any, csrf: str) -> None:
        self.backend = backend
        self.csrf = csrf
        self.throughput = Throughput()
        page = resources.files(__package__).joinpath("static/index.html").read_text("utf-8")
        self.page = page.replace("{{csrf}}", html.escape(csrf, quote=True))
        self._handles: dict[str, Any] = {}
        self._stack = contextlib.AsyncExitStack()

    async def aclose(self) -> None:
        """Close the handles opened on other queues."""
        self._handles.clear()
        await self._stack.aclose()

    @property
    def queue_name(self) -> str | None:
        name = getattr(self.backend, "queue_name", None)
        return name if isinstance(name, str) else None

    async def handle(self, name: str | None) -> Any:
        """The backend for queue ``name`` (None: the URL's queue)."""
        backend = self.backend
        if name is None or name == self.queue_name:
            return backend
        handle = self._handles.get(name)
        if handle is not None:
            return handle
        select = getattr(backend, "queue", None)
        if not callable(select):
            raise OperationError(
                f"{describe(backend)} has no named queues (queue {name!r})", ExitCode.UNSUPPORTED
            )
        if len(self._handles) >= MAX_QUEUE_HANDLES:
            raise OperationError(
                f"the board keeps at most {MAX_QUEUE_HANDLES} queues open", ExitCode.USAGE
            )
        try:
            handle = select(name)
        except (ValueError, TypeError) as error:
            raise OperationError(str(error), ExitCode.USAGE) from None
        if hasattr(handle, "__aenter__"):
            handle = await self._stack.enter_async_context(handle)
        self._handles[name] = handle
        return handle

    async def _of(self, request: Request) -> Any:
        return await self.handle(request.query_params.get("queue") or None)

    async def queue_names(self) -> list[str]:
        """Every queue of the store holding tasks (and the URL's), or just the URL's."""
        if isinstance(self.backend, ListQueues):
            names: list[str] = await self.backend.list_queues()
            return names
        return [self.queue_name or "default"]

    async def queue_counts(self) -> list[dict[str, Any]]:
        """Each queue's counts by status, and total."""
        rows = []
        for name in await self.queue_names():
            own = name == (self.queue_name or "default")
            backend = self.backend if own else await self.handle(name)
            counts = await actions.count_tasks(backend)
            rows.append({"queue": name, "counts": counts, "total": sum(counts.values())})
        return rows

    async def sample(self) -> list[dict[str, Any]]:
        """Read every queue's counts and record the finished total as a throughput sample."""
        rows = await self.queue_counts()
        finals = [status.value for status in Status if status.is_final]
        self.throughput.sample(sum(row["counts"][name] for row in rows for name in finals))
        return rows

    async def index(self, request: Request) -> Response:
        return Response(self.page, media_type="text/html; charset=utf-8")

    async def summary(self, request: Request) -> Response:
        queues = await self.sample()
        backend = await self._of(request)
        name = getattr(backend, "queue_name", None)
        selected = next((row for row in queues if row["queue"] == name), None)
        counts = selected["counts"] if selected else await actions.count_tasks(backend)
        return JSON(
            {
                "backend": describe(backend),
                "queue": name,
                "queues": queues,
                "counts": counts,
                "total": sum(counts.values()),
                "throughput": self.throughput.points(),
                "throughput_interval": self.throughput.interval,
                "can": {
                    "retry": isinstance(backend, ResumeById),
                    "kill": isinstance(backend, Kill),
                    "purge": isinstance(backend, Delete),
                    "workers": isinstance(backend, ListWorkers),
                },
            }
        )

    async def tasks(self, request: Request) -> Response:
        query = request.query_params
        status_text = query.get("status") or None
        status = actions.parse_status(status_text) if status_text else None
        page = _int(query.get("page", "1"), "page")
        page_size = min(_int(query.get("page_size", "20"), "page_size"), 200)
        rows = await actions.list_tasks(await self._of(request), status, page, page_size)
        return JSON({"tasks": rows, "page": page, "page_size": page_size})

    async def task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        return JSON(await actions.show_task(await self._of(request), task_id))

    async def retry(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        return JSON(await actions.retry_task(await self._of(request), task_id))

    async def kill(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        return JSON(await actions.kill_task(await self._of(request), task_id))

    async def purge(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
            status_text = body["status"]
            if not isinstance(status_text, str):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return _error('expected a JSON body {"status": "Failed"}', 400)
        status = actions.parse_status(status_text)
        deleted = await actions.purge_tasks(await self._of(request), status)
        return JSON({"status": status.value, "deleted": deleted})

    async def workers(self, request: Request) -> Response:
        return JSON({"workers": await actions.list_workers(await self._of(request))})

    async def openapi(self, request: Request) -> Response:
        return JSON(OPENAPI)


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise OperationError(
            f"{name} must be a whole number, got {text!r}", ExitCode.USAGE
        ) from None


class _Guard(BaseHTTPMiddleware):
    """Token, CSRF and same-origin checks, errors as JSON, security headers on every response."""

    def __init__(self, app: Any, token: str | None, csrf: str) -> None:
        super().__init__(app)
        self.token = token
        self.csrf = csrf

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await self._checked(request, call_next)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith("/api"):
            response.headers["cache-control"] = "no-store"
        return response

    async def _checked(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.token is None:
            # No token: this machine only. A page elsewhere whose name resolves
            # here (DNS rebinding) still sends its own name as Host: refused.
            host = host_of(request.headers.get("host", ""))
            if not is_loopback(host):
                return PlainTextResponse(
                    f"this board answers only to loopback host names, not {host!r}",
                    status_code=400,
                )
        else:
            given = request.query_params.get("token")
            if given is not None and request.method == "GET" and request.url.path == "/":
                if not _same(given, self.token):
                    return PlainTextResponse("wrong token", status_code=401)
                # Trade the token in the address for a cookie, and drop it from the address.
                redirect = RedirectResponse("/", status_code=303)
                redirect.set_cookie(
                    TOKEN_COOKIE, self.token, httponly=True, samesite="strict", path="/"
                )
                return redirect
            if not self._authorized(request):
                message = "a token is required: open /?token=<token> or send Authorization: Bearer"
                if request.url.path.startswith("/api"):
                    return _error(message, 401)
                return PlainTextResponse(message, status_code=401)
        if request.method not in ("GET", "HEAD"):
            refusal = self._cross_site(request)
            if refusal is not None:
                return _error(refusal, 403)
        return await call_next(request)

    def _authorized(self, request: Request) -> bool:
        assert self.token is not None
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer ") and _same(header[7:], self.token):
            return True
        cookie = request.cookies.get(TOKEN_COOKIE)
        return cookie is not None and _same(cookie, self.token)

    def _cross_site(self, request: Request) -> str | None:
        """Why a state-changing request is refused as cross-site, or None."""
        if not _same(request.headers.get(CSRF_HEADER, ""), self.csrf):
            return "missing or wrong X-CSRF-Token header (actions come from the board's page)"
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"cross-site request refused (Sec-Fetch-Site: {site})"
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return f"cross-origin request refused (Origin: {origin})"
        return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def create_app(backend: Any, *, token: str | None = None, csrf: str | None = None) -> Starlette:
    """The board for an opened ``backend``.

    ``token``: required on every request when given (see the module
    docstring); without one, only loopback host names are served. ``csrf``:
    the secret actions must carry (random by default).
    """
    secret = csrf if csrf is not None else secrets.token_urlsafe(32)
    board = _Board(backend, secret)
    static = resources.files(__package__).joinpath("static")
    routes = [
        Route("/", board.index),
        Route("/api/summary", board.summary),
        Route("/api/tasks", board.tasks),
        Route("/api/tasks/{task_id:str}", board.task),
        Route("/api/tasks/{task_id:str}/retry", board.retry, methods=["POST"]),
        Route("/api/tasks/{task_id:str}/kill", board.kill, methods=["POST"]),
        Route("/api/purge", board.purge, methods=["POST"]),
        Route("/api/workers", board.workers),
        Route("/api/openapi.json", board.openapi),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    middleware = [Middleware(_Guard, token=token, csrf=secret)]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={OperationError: _operation_failed},
    )
    app.state.board = board
    return app


async def close_app(app: Starlette) -> None:
    """Close what the board opened itself (handles on the store's other queues)."""
    board: _Board = app.state.board
    await board.aclose()


async def sample_throughput(app: Starlette) -> None:
    """Sample the counts every throughput interval while the board runs (run it in a nursery).

    So the chart has history from the board's start, not only from when a
    page first asked. A store that fails meanwhile leaves a gap, logged.
    """
    board: _Board = app.state.board
    while True:
        try:
            await board.sample()
        except (OperationError, StorageError) as error:
            logger.warning("pyapalis board: cannot read the counts: %s", error)
        await trio.sleep(board.throughput.interval)


async def _operation_failed(request: Request, error: Exception) -> Response:
    """An action that cannot be done: its one-line message, with the HTTP status it maps to."""
    assert isinstance(error, OperationError)
    return _error(error.message, HTTP_STATUS.get(error.code, 500))
