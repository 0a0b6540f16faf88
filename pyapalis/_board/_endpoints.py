"""The board's endpoints: the page and the JSON API, on one opened backend and its queues."""

from __future__ import annotations

import contextlib
import html
from importlib import resources
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .._ops import _actions as actions
from .._ops._errors import ExitCode, OperationError
from .._ops._store import describe
from .._status import Status
from ..backends._capabilities import Delete, Kill, ListQueues, ListWorkers, ResumeById
from ._openapi import OPENAPI
from ._responses import JSON, error_response
from ._throughput import Throughput

__all__ = ["MAX_QUEUE_HANDLES", "Board"]

MAX_QUEUE_HANDLES = 64
"""Handles the board opens at most on queue names that come from requests.

Names the store itself lists (``list_queues``) are not limited: a request
naming queues that do not exist must not make the board hold handles without
end, but every real queue must be shown.
"""


class Board:
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

    async def handle(self, name: str | None, *, listed: bool = False) -> Any:
        """The backend for queue ``name`` (None: the URL's queue).

        ``listed``: the name comes from the store's own list of queues, not
        from a request (see :data:`MAX_QUEUE_HANDLES`).
        """
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
        if not listed and len(self._handles) >= MAX_QUEUE_HANDLES:
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
            backend = self.backend if own else await self.handle(name, listed=True)
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
            return error_response('expected a JSON body {"status": "Failed"}', 400)
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
