"""Pipe: feed a backend from an async iterable while workers consume it.

apalis pipes a stream (a cron schedule, a message consumer) into a backend so
that its items become tasks. Here a :class:`Pipe` is something you run in a
nursery beside the worker::

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pipe_to, ticks(), storage)
        nursery.start_soon(worker.run)

Each item is pushed (``await backend.push(item)``) before the next is
requested, so a bounded backend (``MemoryStorage(maxsize=n)``) holds the
source back. Nothing is dropped: an error from the source propagates from
:meth:`Pipe.run` after every earlier item was pushed, and an item whose push
was cancelled is kept and pushed first when the pipe runs again.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Protocol, runtime_checkable

import trio

from ._implementation import TaskId

__all__ = ["Pipe", "PushTarget", "pipe_to"]


@runtime_checkable
class PushTarget(Protocol):
    """What a pipe feeds: anything with ``await push(item)``."""

    async def push(self, args: Any) -> TaskId: ...


_NOTHING: Any = object()


class Pipe:
    """Pushes the items of an async iterable into a backend; see the module docs.

    ``await pipe.run()`` pushes until the source ends and returns how many
    items this pipe has pushed in all (also :attr:`count`). Run it again
    after a cancellation to carry on where it stopped.
    """

    __slots__ = ("_backend", "_count", "_held", "_iterator", "_running", "_source")

    def __init__(self, source: AsyncIterable[Any], backend: PushTarget) -> None:
        if not isinstance(source, AsyncIterable):
            raise TypeError(f"Pipe: source must be an async iterable, got {type(source).__name__}")
        if not callable(getattr(backend, "push", None)):
            raise TypeError(
                f"Pipe: backend must have an async push() method, got {type(backend).__name__}"
            )
        self._source = source
        self._backend = backend
        self._iterator: AsyncIterator[Any] | None = None
        self._held: Any = _NOTHING  # an item taken from the source, not yet pushed
        self._count = 0
        self._running = False

    @property
    def source(self) -> AsyncIterable[Any]:
        """The async iterable items come from."""
        return self._source

    @property
    def backend(self) -> PushTarget:
        """The backend items go to."""
        return self._backend

    @property
    def count(self) -> int:
        """Items pushed so far."""
        return self._count

    async def run(self) -> int:
        """Push every item until the source ends; returns the total pushed.

        An error raised by the source propagates. Raises ``trio.BusyResourceError``
        if this pipe is already running.
        """
        if self._running:
            raise trio.BusyResourceError("Pipe.run: this pipe is already running")
        self._running = True
        try:
            if self._iterator is None:
                self._iterator = aiter(self._source)
            push = self._backend.push
            while True:
                if self._held is _NOTHING:
                    try:
                        self._held = await anext(self._iterator)
                    except StopAsyncIteration:
                        return self._count
                await push(self._held)
                self._held = _NOTHING
                self._count += 1
        finally:
            self._running = False

    async def aclose(self) -> None:
        """Close the source's iterator (an async generator's ``aclose``), if started."""
        iterator, self._iterator = self._iterator, None
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()

    def __repr__(self) -> str:
        return f"Pipe(count={self._count}, backend={self._backend!r})"


async def pipe_to(source: AsyncIterable[Any], backend: PushTarget) -> int:
    """Push every item of ``source`` into ``backend``; returns the count.

    ``nursery.start_soon(pipe_to, source, backend)`` runs it beside a worker.
    """
    return await Pipe(source, backend).run()
