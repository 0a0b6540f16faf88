"""The board's Starlette app: routes, the security middleware, the throughput sampler.

The endpoints are :mod:`._endpoints`, the security rules :mod:`._security`.
"""

from __future__ import annotations

import logging
import secrets
from importlib import resources
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._errors import StorageError
from .._ops._errors import OperationError
from ._endpoints import Board
from ._responses import operation_failed
from ._security import Guard

__all__ = ["close_app", "create_app", "sample_throughput"]

logger = logging.getLogger("pyapalis.board")


def create_app(backend: Any, *, token: str | None = None, csrf: str | None = None) -> Starlette:
    """The board for an opened ``backend``.

    ``token``: required on every request when given (see :mod:`._security`
    ); without one, only loopback host names are served. ``csrf``:
    the secret actions must carry (random by default).
    """
    secret = csrf if csrf is not None else secrets.token_urlsafe(32)
    board = Board(backend, secret)
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
    middleware = [Middleware(Guard, token=token, csrf=secret)]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={OperationError: operation_failed},
    )
    app.state.board = board
    return app


async def close_app(app: Starlette) -> None:
    """Close what the board opened itself (handles on the store's other queues)."""
    board: Board = app.state.board
    await board.aclose()


async def sample_throughput(app: Starlette) -> None:
    """Sample the counts every throughput interval while the board runs (run it in a nursery).

    So the chart has history from the board's start, not only from when a
    page first asked. A store that fails meanwhile leaves a gap, logged.
    """
    board: Board = app.state.board
    while True:
        try:
            await board.sample()
        except (OperationError, StorageError) as error:
            logger.warning("pyapalis board: cannot read the counts: %s", error)
        await trio.sleep(board.throughput.interval)
