"""Pipe: feed a backend from an async iterable while workers consume it.

apalis pipes a stream (a cron schedule, a message consumer) into a backend so
that its items become tasks. A :class:`Pipe` is itself a backend, as in apalis
("a pipe-based backend for a stream-to-backend pipeline")::

    worker = WorkerBuilder("ticks").backend(Pipe(ticks(), storage)).build(handler)
    await worker.run()  # runs the pipe and consumes storage, in one worker

The worker takes, acknowledges and retries through the backend the pipe feeds
(the pipe hands it that backend's own methods, so consuming costs nothing
more), and runs the pipe beside its consumer loops for the whole run
(:class:`~pyapalis.backends._protocols.RunsAlongside`):

* when the source ends, the worker keeps consuming (the backend may be fed by
  other producers too; stop the worker as usual);
* an error from the source stops the worker with that error, raised from
  ``run()`` after the tasks in flight have finished;
* nothing pushed is lost: every item pushed before the error or the stop stays
  in the backend for the next worker, and an item taken from the source whose
  push was interrupted is pushed first when the pipe runs again.

One worker runs a given pipe at a time. A pipe can also run on its own, in a
nursery beside the workers::

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pipe_to, ticks(), storage)
        nursery.start_soon(worker.run)

A source that makes its own tasks (a :class:`TaskSource`, such as
:class:`~pyapalis.CronStream`, whose ticks get ids derived from the schedule)
has them pushed with ``await backend.push_task(task)`` instead.

Each item is pushed (``await backend.push(item)``) before the next is
requested, so a bounded backend (``MemoryStorage(maxsize=n)``) holds the
source back. Nothing is dropped: an error from the source propagates from
:meth:`Pipe.run` after every earlier item was pushed, and an item whose push
was cancelled is kept and pushed first when the pipe runs again.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

import trio

from .._implementation import Task, TaskId
from .._status import Status
from ._capabilities import RegisterWorker
from ._worker_protocols import Bindable, SyncAck, Wakeable

__all__ = ["Pipe", "PushTarget", "TaskPushTarget", "TaskSource", "pipe_to"]


@runtime_checkable
class PushTarget(Protocol):
    """What a pipe feeds: anything with ``await push(item)``."""

    async def push(self, args: Any) -> TaskId: ...


@runtime_checkable
class TaskPushTarget(Protocol):
    """What a pipe whose source makes tasks (:class:`TaskSource`) feeds."""

    async def push_task(self, task: Task) -> TaskId: ...


@runtime_checkable
class TaskSource(Protocol):
    """Optional: a pipe source that makes its own tasks for the backend it feeds.

    A :class:`~pyapalis.CronStream` is one: its ticks become tasks whose ids
    derive from the schedule and the tick, so that several processes feeding
    one backend store each tick once. A pipe whose source has it pushes the
    tasks of ``source.tasks_for(backend)`` with ``await backend.push_task(task)``
    instead of pushing the source's items as args.
    """

    def tasks_for(self, backend: object) -> AsyncIterator[Task]:
        """The tasks to push into ``backend``; an iterator a cancelled ``__anext__``
        leaves usable (not an async generator)."""


@runtime_checkable
class _Closing(Protocol):
    """A source iterator that holds something until closed (an async generator)."""

    async def aclose(self) -> None: ...


_NOTHING: Any = object()


@runtime_checkable
class _Consumable(Protocol):
    """What a worker needs of the backend a pipe feeds (``Backend`` but ``bind``)."""

    def take_nowait(self) -> Task | None: ...
    async def take(self) -> Task: ...
    async def ack(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None: ...
    async def retry(self, task: Task, delay: float, error: BaseException) -> None: ...
    async def release(self, task: Task) -> None: ...


_DELEGATED: tuple[tuple[type, tuple[str, ...]], ...] = (
    # Present when the pipe feeds a backend a worker can consume ...
    (_Consumable, ("take_nowait", "take", "ack", "retry", "release")),
    # ... and the optional extras a worker uses (fast paths, the heartbeat).
    (Bindable, ("bind",)),
    (SyncAck, ("ack_nowait",)),
    (Wakeable, ("take_or_wake", "wake_takers")),
    (RegisterWorker, ("register_worker",)),
)
"""The declared protocols a pipe lends the worker when its backend implements them."""


class Pipe:
    """Pushes the items of an async iterable into a backend; see the module docs.

    ``await pipe.run()`` pushes until the source ends and returns how many
    items this pipe has pushed in all (also :attr:`count`). Run it again
    after a cancellation to carry on where it stopped.

    As a worker's backend (``WorkerBuilder(...).backend(pipe)``), it lends
    the worker the methods of the backend it feeds (``take_nowait``, ``take``,
    ``ack``, ``retry``, ``release``, and ``bind``, ``ack_nowait``,
    ``take_or_wake``, ``wake_takers``, ``register_worker`` when that backend
    has them: the very same bound methods), and the worker runs
    :meth:`run_alongside`.
    """

    # No __slots__: a delegated method must be an instance attribute, present
    # only when the backend has it, for isinstance() against runtime-checkable
    # protocols (SyncAck, RegisterWorker) to tell the truth.

    bind: Callable[[], None]
    take_nowait: Callable[[], Task | None]
    take: Callable[[], Awaitable[Task]]
    ack: Callable[[Task, Status, Any, BaseException | None], Awaitable[None]]
    retry: Callable[[Task, float, BaseException], Awaitable[None]]
    release: Callable[[Task], Awaitable[None]]
    ack_nowait: Callable[[Task, Status, Any, BaseException | None], None]
    take_or_wake: Callable[[], Awaitable[Task | None]]
    wake_takers: Callable[[], None]
    register_worker: Callable[[str], Awaitable[None]]

    def __init__(self, source: AsyncIterable[Any], backend: PushTarget) -> None:
        if not isinstance(source, AsyncIterable):
            raise TypeError(f"Pipe: source must be an async iterable, got {type(source).__name__}")
        if not isinstance(backend, PushTarget):
            raise TypeError(
                f"Pipe: backend must have an async push() method, got {type(backend).__name__}"
            )
        if isinstance(source, TaskSource) and not isinstance(backend, TaskPushTarget):
            raise TypeError(
                f"Pipe: {type(source).__name__} makes tasks: the backend needs an async "
                f"push_task() method, and {type(backend).__name__} has none"
            )
        self._source = source
        self._backend = backend
        self._iterator: AsyncIterator[Any] | None = None
        self._held: Any = _NOTHING  # an item taken from the source, not yet pushed
        self._count = 0
        self._running = False
        # The backend's own methods, bound once: a worker consuming the pipe
        # calls them directly. A method the backend lacks stays unset here too.
        for protocol, names in _DELEGATED:
            if isinstance(backend, protocol):
                for name in names:
                    setattr(self, name, getattr(backend, name))

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
            raise trio.BusyResourceError(
                "Pipe.run: this pipe is already running (one worker or pipe_to() runs a "
                "pipe at a time)"
            )
        self._running = True
        try:
            source, backend = self._source, self._backend
            push: Callable[[Any], Awaitable[TaskId]] = backend.push
            if isinstance(source, TaskSource) and isinstance(backend, TaskPushTarget):
                push = backend.push_task
                if self._iterator is None:
                    self._iterator = source.tasks_for(backend)
            elif self._iterator is None:
                self._iterator = aiter(source)
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

    async def run_alongside(self) -> None:
        """:meth:`run`, as a worker consuming this pipe runs it (see the module docs)."""
        await self.run()

    async def aclose(self) -> None:
        """Close the source's iterator (an async generator's ``aclose``), if started."""
        iterator, self._iterator = self._iterator, None
        if isinstance(iterator, _Closing):
            await iterator.aclose()

    def __repr__(self) -> str:
        return f"Pipe(count={self._count}, backend={self._backend!r})"


async def pipe_to(source: AsyncIterable[Any], backend: PushTarget) -> int:
    """Push every item of ``source`` into ``backend``; returns the count.

    ``nursery.start_soon(pipe_to, source, backend)`` runs it beside a worker.
    """
    return await Pipe(source, backend).run()
