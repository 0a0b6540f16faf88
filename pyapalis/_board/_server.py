"""Serving the board with hypercorn's trio worker until SIGINT/SIGTERM.

The board binds 127.0.0.1 unless told otherwise; any other address needs a
token (``--token`` or ``PYAPALIS_BOARD_TOKEN``), since whoever reaches it can
retry, kill and delete tasks.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import trio

from .._ops._errors import ExitCode, OperationError
from .._ops._store import opened
from ._hosts import is_loopback

__all__ = ["TOKEN_VARIABLE", "check_binding", "serve_board"]

TOKEN_VARIABLE = "PYAPALIS_BOARD_TOKEN"


def check_binding(host: str, token: str | None) -> str | None:
    """The token to require (from the argument or the environment), or None on loopback.

    Raises a USAGE error for a host other than loopback without a token.
    """
    chosen = token if token is not None else os.environ.get(TOKEN_VARIABLE) or None
    if chosen is not None and len(chosen) < 16:
        raise OperationError(
            "board: the token must be at least 16 characters (try: python -c "
            "'import secrets; print(secrets.token_urlsafe())')",
            ExitCode.USAGE,
        )
    if chosen is None and not is_loopback(host):
        raise OperationError(
            f"board: binding {host} (not this machine only) needs a token: --token or "
            f"{TOKEN_VARIABLE}",
            ExitCode.USAGE,
        )
    return chosen


async def serve_board(
    url: str,
    queue: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the board of the store ``url`` names until SIGINT/SIGTERM (then return).

    ``task_status.started`` receives the addresses bound (``http://host:port``).
    """
    required = check_binding(host, token)
    try:
        from hypercorn.config import Config
        from hypercorn.trio import serve

        from ._app import close_app, create_app, sample_throughput
    except ImportError as error:
        raise OperationError(
            f"board: needs the board extra (pip install 'pyapalis[board]'): {error}",
            ExitCode.USAGE,
        ) from None
    async with opened(url, queue) as backend:
        # Starlette is an ASGI 3 app; hypercorn's type for one is narrower than its signature.
        app: Any = create_app(backend, token=required)
        config = Config()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = "-"
        try:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

                async def stop_on_signal() -> None:
                    async for _signum in signals:
                        return

                async with trio.open_nursery() as nursery:

                    async def serve_until_signal(
                        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
                    ) -> None:
                        await serve(
                            app, config, shutdown_trigger=stop_on_signal, task_status=task_status
                        )
                        nursery.cancel_scope.cancel()  # the sampler too

                    binds: list[str] = await nursery.start(serve_until_signal)
                    nursery.start_soon(sample_throughput, app)
                    for address in binds:
                        print(f"pyapalis board: {url} on {address}/", file=sys.stderr, flush=True)
                    task_status.started(binds)
        finally:
            with trio.CancelScope(shield=True):
                await close_app(app)
