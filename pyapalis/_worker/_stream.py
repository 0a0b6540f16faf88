"""A worker run as a stream of its events: ``async with worker.stream() as events``."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from ._context import WorkerContext
from ._events import STOP, Event

__all__ = ["EventStream"]


class EventStream:
    """The events of a worker run; see :meth:`~pyapalis.Worker.stream`.

    ``EventStream(run, context)``: ``run()`` runs the worker whose context is
    ``context``. The stream listens from its creation until the run is over.
    """

    def __init__(self, run: Callable[[], Awaitable[None]], context: WorkerContext) -> None:
        self._run_worker = run
        self._context = context
        send, receive = trio.open_memory_channel[Event](math.inf)
        self._send = send
        self._receive = receive
        self._nursery_manager: Any = None

        def forward(_ctx: WorkerContext, event: Event) -> None:
            send.send_nowait(event)
            if event is STOP:
                send.close()

        self._forward = forward
        context.add_listener(forward)

    async def _run(self) -> None:
        try:
            await self._run_worker()
        finally:
            self._send.close()
            # The run is over (a worker runs once): stop holding the channel.
            self._context.remove_listener(self._forward)

    async def __aenter__(self) -> trio.MemoryReceiveChannel[Event]:
        self._nursery_manager = trio.open_nursery()
        nursery = await self._nursery_manager.__aenter__()
        nursery.start_soon(self._run)
        return self._receive

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        # Leaving the block (normally, by break, or by an error) stops the
        # worker gracefully; the block waits for it to drain.
        if not self._context.is_shutting_down:
            self._context.stop()
        result: bool | None = await self._nursery_manager.__aexit__(*exc_info)
        return result

    async def __aiter__(self) -> AsyncIterator[Event]:
        async with self as events:
            async for event in events:
                yield event
