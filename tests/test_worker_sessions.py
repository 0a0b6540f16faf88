"""A session per worker run, for backends shared by many workers (WorkerSessions).

A backend with ``session(identity)`` is consumed through the session it returns:
each run mints a fresh :class:`WorkerIdentity` (a ULID id; the name is only a
label), enters ``async with backend.session(identity)`` around the whole run
(also when the run is cancelled, so the backend can flush its acks and hand
back what it prefetched) and consumes the session, with the session's own
optional extras (here its heartbeat). Every run has an id on
``WorkerContext.worker_id``, None before the first.
"""

from __future__ import annotations

import os
import socket
import time
from types import TracebackType
from typing import Any

import pytest
import trio
import trio.testing

from pyapalis import MemoryStorage, Status, Task, WorkerBuilder, WorkerContext
from pyapalis.backends import RegisterWorker, WorkerIdentity, WorkerSessions


class Shared:
    """A backend shared by workers: one storage, a session per run, a log of what happened."""

    def __init__(self) -> None:
        self.storage = MemoryStorage()
        self.log: list[tuple[Any, ...]] = []
        self.identities: list[WorkerIdentity] = []
        self.flushed: list[tuple[Any, Status]] = []

    def session(self, worker: WorkerIdentity) -> Session:
        self.identities.append(worker)
        return Session(self, worker)


class Session:
    """One run's view of :class:`Shared`: acks buffered until it closes, as a shared
    backend batches them; a heartbeat of its own."""

    def __init__(self, shared: Shared, identity: WorkerIdentity) -> None:
        self.shared = shared
        self.identity = identity
        self.acked: list[tuple[Any, Status]] = []
        storage = shared.storage
        self.take_nowait = storage.take_nowait
        self.take = storage.take
        self.retry = storage.retry
        self.release = storage.release

    async def ack(self, task: Task, status: Status, result: Any, error: Any) -> None:
        self.acked.append((task.args, status))
        await trio.lowlevel.checkpoint()

    async def register_worker(self, name: str) -> None:
        self.shared.log.append(("beat", name, self.identity.id))

    async def __aenter__(self) -> Session:
        self.shared.log.append(("open", self.identity.id))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shared.log.append(("close", self.identity.id, _kind(exc), len(self.acked)))
        self.shared.flushed.extend(self.acked)


def _kind(exc: BaseException | None) -> str | None:
    """The exception a session closed with: its type, "Cancelled" for a cancellation."""
    if exc is None:
        return None
    if isinstance(exc, BaseExceptionGroup):  # several loops were cancelled at once
        _, rest = exc.split(trio.Cancelled)
        return "Cancelled" if rest is None else type(exc).__name__
    return type(exc).__name__


def logging_to(shared: Shared) -> Any:
    def listener(ctx: WorkerContext, event: Any) -> None:
        if event.kind.value in ("Start", "Stop"):
            shared.log.append((event.kind.value, ctx.worker_id))

    return listener


def test_the_fake_is_what_the_protocols_describe() -> None:
    shared = Shared()
    assert isinstance(shared, WorkerSessions)
    assert not callable(getattr(shared, "take_nowait", None))  # sessions, not a backend itself
    assert isinstance(shared.session(WorkerIdentity.mint("w", 1)), RegisterWorker)


async def test_a_run_consumes_its_session_from_start_to_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shared = Shared()
    for item in range(5):
        shared.storage.push_nowait(item)
    handled: list[int] = []

    async def handler(item: int, ctx: WorkerContext) -> None:
        handled.append(item)
        await trio.sleep(1)
        if len(handled) == 5:
            ctx.stop()

    worker = (
        WorkerBuilder("shared")
        .backend(shared)
        .concurrency(2)
        .on_event(logging_to(shared))
        .build(handler)
    )
    assert worker.context.worker_id is None
    assert worker.source is None  # a session is checked when a run opens it
    assert worker.dispatch.layered is None  # the loops run the handler, as for any backend
    before = time.time()
    await worker.run()
    after = time.time()
    [identity] = shared.identities
    run_id = identity.id
    assert worker.context.worker_id == run_id
    assert shared.log == [
        ("open", run_id),
        ("Start", run_id),
        ("beat", "shared", run_id),  # the session's own heartbeat
        ("close", run_id, None, 5),  # every ack was in before the session closed
        ("Stop", run_id),
    ]
    assert sorted(shared.flushed) == [(i, Status.Done) for i in range(5)]
    assert identity.name == "shared"
    assert identity.concurrency == 2
    assert identity.pid == os.getpid()
    assert identity.host == socket.gethostname()
    assert before <= identity.started_at <= after


async def test_a_cancelled_run_still_closes_its_session_with_its_tasks_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shared = Shared()
    tasks = [Task(i) for i in range(3)]
    for task in tasks:
        await shared.storage.push_task(task)

    async def handler(item: int) -> None:
        await trio.sleep(100)

    worker = WorkerBuilder("shared").backend(shared).concurrency(2).build(handler)
    with trio.move_on_after(5):
        await worker.run()
    run_id = shared.identities[0].id
    assert shared.log[-1] == ("close", run_id, "Cancelled", 0)
    # The two tasks in flight went back, uncounted, before the session closed.
    assert [t.parts.status for t in tasks] == [Status.Pending] * 3
    assert [t.parts.attempt.current() for t in tasks] == [0, 0, 0]
    assert len(shared.storage) == 3


async def test_every_run_has_a_fresh_worker_id(autojump_clock: trio.testing.MockClock) -> None:
    shared = Shared()

    async def handler(item: int, ctx: WorkerContext) -> None:
        ctx.stop()

    builder = WorkerBuilder("shared").backend(shared)
    for item in range(3):
        shared.storage.push_nowait(item)
        await builder.build(handler).run()
    ids = [identity.id for identity in shared.identities]
    assert len(set(ids)) == 3
    assert ids == sorted(ids)  # ULIDs: time-ordered
    assert all(len(i) == 26 for i in ids)
    assert {identity.name for identity in shared.identities} == {"shared"}


async def test_a_worker_on_any_backend_has_a_worker_id_per_run() -> None:
    storage = MemoryStorage()

    async def handler(item: int, ctx: WorkerContext) -> None:
        seen.append(ctx.worker_id)
        ctx.stop()

    seen: list[str | None] = []
    first = WorkerBuilder("w").backend(storage).build(handler)
    second = WorkerBuilder("w").backend(storage).build(handler)
    assert first.context.worker_id is None
    for worker in (first, second):
        storage.push_nowait(1)
        await worker.run()
    assert seen == [first.context.worker_id, second.context.worker_id]
    assert first.context.worker_id != second.context.worker_id
    assert all(isinstance(i, str) and len(i) == 26 for i in seen)


async def test_a_session_that_is_no_backend_fails_the_run() -> None:
    class Broken:
        def session(self, worker: WorkerIdentity) -> Any:
            return Opened()

    class Opened:
        async def __aenter__(self) -> Opened:
            return self

        async def __aexit__(self, *exc_info: Any) -> None:
            pass

    worker = WorkerBuilder("w").backend(Broken()).build(lambda item: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Opened is not a backend \(no take_nowait\(\) method\)"):
        await worker.run()
    assert worker.context.is_stopped


def test_identities_are_minted_fresh() -> None:
    one = WorkerIdentity.mint("a", 3)
    two = WorkerIdentity.mint("a", 3)
    assert one.id != two.id and one.id < two.id
    assert (one.name, one.concurrency, one.pid) == ("a", 3, os.getpid())
    with pytest.raises(AttributeError):
        one.name = "b"  # type: ignore[misc]
