"""The behaviour every pyapalis backend must have, as a pytest suite.

A backend (pyapalis's own or a third party's) runs the suite by subclassing
:class:`BackendConformance` in a test module and providing one fixture,
``harness``, that returns a :class:`BackendHarness`::

    from pyapalis.testing import BackendConformance, BackendHarness

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def harness(self, tmp_path):
            return BackendHarness(open=lambda: MyBackend(tmp_path / "db"))

The suite checks the delivery rules every backend keeps (delivery is
at-least-once: a task leaves the backend only once its final status is
acknowledged): push and consume, FIFO, retries that persist attempts
(5 attempts, then no more deliveries), abort gives Killed and no redelivery, a
scheduled task is never early, results through ``wait_for``, and resumption
after a worker dies. Tests of a capability the backend lacks are skipped,
naming it.

Everything runs in trio's virtual time (pytest-trio's ``autojump_clock``), so
the suite takes milliseconds, and with a virtual wall clock: the ``wall_clock``
fixture replaces ``time.time()`` with a :class:`~pyapalis.testing.WallClock`
that moves only with trio's clock, so how busy the machine is never changes
when a scheduled task comes due. A backend that reads the wall clock another
way (``from time import time``, its server's clock) can override the fixture
in its subclass. The suite needs pytest and pytest-trio (the ``testing``
extra).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing

from .._errors import AbortError
from .._implementation import Attempt, Task, TaskBuilder, TaskId
from .._status import Status
from .._worker._context import WorkerContext
from .._worker._worker import WorkerBuilder
from ..backends._capabilities import (
    FetchById,
    ListTasks,
    RegisterWorker,
    Reschedule,
    ResumeAbandoned,
    ResumeById,
    TaskSink,
    Vacuum,
    WaitForCompletion,
)
from ..backends._protocols import Backend
from ._wall_clock import WallClock

__all__ = ["BackendConformance", "BackendHarness"]

Opener = Callable[[], Any]


@dataclasses.dataclass
class BackendHarness:
    """How the suite gets at a backend.

    ``open()`` returns a handle on the backend's store (sync or async); calling
    it again must return a handle on the *same* store (a new connection, or
    the same object for an in-memory backend). ``close(backend)``, if given,
    releases a handle at the end of a test. ``crash(backend)``, given only for
    a persistent backend, makes the handle vanish the way a killed process
    would (no ack, no hand-back); the suite then opens a new handle and
    expects the tasks that handle had taken to come back. ``unique_ids``
    says the backend follows the id rule (``push_task`` of an id that exists,
    in any status until it is deleted, stores nothing and returns that id):
    every built-in backend does; a backend whose store is user code (a
    ``CustomBackend``) cannot promise it.
    """

    open: Opener
    close: Callable[[Any], Any] | None = None
    crash: Callable[[Any], Any] | None = None
    unique_ids: bool = True


def _supports(backend: Any, capability: type) -> bool:
    """Whether ``backend`` implements a capability protocol (without narrowing its type)."""
    return isinstance(backend, capability)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _run_trio(async_fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    """``trio.run`` for the suite's tests, keeping the reason of a skip.

    pytest-trio runs a test inside a nursery, so a ``pytest.skip(reason)``
    reaches it wrapped in an exception group, which pytest-trio 0.8 turns into
    a bare ``pytest.skip()``: the report then says "Skipped" and nothing else.
    Here the skip itself is re-raised, reason and location intact.
    """
    try:
        return trio.run(async_fn, *args, **kwargs)
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1 and isinstance(leaves[0], pytest.skip.Exception):
            raise leaves[0] from None
        raise


_trio_test = pytest.mark.trio(run=_run_trio)
"""Marks each test of the suite (a test's own marker wins over trio_mode's)."""


class _Handles:
    """The handles a test opened through its harness, closed at the end of the test."""

    def __init__(self, harness: BackendHarness) -> None:
        self.harness = harness
        self.opened: list[Any] = []

    async def open(self) -> Any:
        backend = await _maybe_await(self.harness.open())
        if not isinstance(backend, Backend):
            pytest.fail(f"harness.open() returned {backend!r}, which is not a pyapalis Backend")
        if not isinstance(backend, TaskSink):
            pytest.fail(f"{type(backend).__name__} does not implement TaskSink (push...)")
        self.opened.append(backend)
        return backend

    async def crash(self, backend: Any) -> None:
        assert self.harness.crash is not None
        await _maybe_await(self.harness.crash(backend))
        self.opened.remove(backend)

    async def close_all(self) -> None:
        if self.harness.close is not None:
            for handle in reversed(self.opened):
                await _maybe_await(self.harness.close(handle))
        self.opened.clear()


@dataclasses.dataclass(frozen=True)
class _BadCall:
    """A call every backend must refuse with exactly ``error(message)``."""

    capability: type
    call: Callable[[Any], Awaitable[Any]]
    error: type[Exception]
    message: str


async def _first(results: Any) -> Any:
    """The first item of an async iterator (``wait_for`` checks its ids when started)."""
    return await results.__anext__()


_BAD_CALLS: dict[str, _BadCall] = {
    "push_task-not-a-task": _BadCall(
        TaskSink,
        lambda b: b.push_task(3),
        TypeError,
        "push_task: task must be a Task, got int 3",
    ),
    "fetch_by_id-empty": _BadCall(
        FetchById,
        lambda b: b.fetch_by_id(""),
        ValueError,
        "fetch_by_id: task_id must be a TaskId or a non-empty str, got str ''",
    ),
    "fetch_by_id-int": _BadCall(
        FetchById,
        lambda b: b.fetch_by_id(5),
        TypeError,
        "fetch_by_id: task_id must be a TaskId or a non-empty str, got int 5",
    ),
    "fetch_by_id-none": _BadCall(
        FetchById,
        lambda b: b.fetch_by_id(None),
        TypeError,
        "fetch_by_id: task_id must be a TaskId or a non-empty str, got NoneType None",
    ),
    "list_tasks-page-str": _BadCall(
        ListTasks,
        lambda b: b.list_tasks(page="1"),
        TypeError,
        "list_tasks: page must be an int >= 1, got str '1'",
    ),
    "list_tasks-page-zero": _BadCall(
        ListTasks,
        lambda b: b.list_tasks(page=0),
        ValueError,
        "list_tasks: page must be an int >= 1, got int 0",
    ),
    "list_tasks-page_size-bool": _BadCall(
        ListTasks,
        lambda b: b.list_tasks(page_size=True),
        TypeError,
        "list_tasks: page_size must be an int >= 1, got bool True",
    ),
    "list_tasks-page_size-float": _BadCall(
        ListTasks,
        lambda b: b.list_tasks(page_size=1.5),
        TypeError,
        "list_tasks: page_size must be an int >= 1, got float 1.5",
    ),
    "list_tasks-status-unknown": _BadCall(
        ListTasks,
        lambda b: b.list_tasks(status="Finished"),
        ValueError,
        "list_tasks: status must be a Status, a Status name or None, got str 'Finished'",
    ),
    "list_tasks-status-int": _BadCall(
        ListTasks,
        lambda b: b.list_tasks(status=3),
        TypeError,
        "list_tasks: status must be a Status, a Status name or None, got int 3",
    ),
    "check_status-one-str": _BadCall(
        WaitForCompletion,
        lambda b: b.check_status("01J0000000000000000000000"),
        TypeError,
        "check_status: task_ids must be an iterable of task ids, "
        "got str '01J0000000000000000000000'",
    ),
    "check_status-bad-item": _BadCall(
        WaitForCompletion,
        lambda b: b.check_status([3]),
        TypeError,
        "check_status: task_ids item must be a TaskId or a non-empty str, got int 3",
    ),
    "check_status-empty-item": _BadCall(
        WaitForCompletion,
        lambda b: b.check_status([""]),
        ValueError,
        "check_status: task_ids item must be a TaskId or a non-empty str, got str ''",
    ),
    "wait_for_single-empty": _BadCall(
        WaitForCompletion,
        lambda b: b.wait_for_single(""),
        ValueError,
        "wait_for_single: task_id must be a TaskId or a non-empty str, got str ''",
    ),
    "wait_for_single-bytes": _BadCall(
        WaitForCompletion,
        lambda b: b.wait_for_single(b"x"),
        TypeError,
        "wait_for_single: task_id must be a TaskId or a non-empty str, got bytes b'x'",
    ),
    "wait_for-not-iterable": _BadCall(
        WaitForCompletion,
        lambda b: _first(b.wait_for(7)),
        TypeError,
        "wait_for: task_ids must be an iterable of task ids, got int 7",
    ),
    "wait_for-bad-item": _BadCall(
        WaitForCompletion,
        lambda b: _first(b.wait_for([None])),
        TypeError,
        "wait_for: task_ids item must be a TaskId or a non-empty str, got NoneType None",
    ),
    "reschedule-not-a-task": _BadCall(
        Reschedule,
        lambda b: b.reschedule("task", -1),  # both bad: the task is checked first
        TypeError,
        "reschedule: task must be a Task, got str 'task'",
    ),
    "reschedule-negative-delay": _BadCall(
        Reschedule,
        lambda b: b.reschedule(Task("x"), -1),
        ValueError,
        "reschedule: delay must be a finite number of seconds >= 0 or a timedelta, got int -1",
    ),
    "reschedule-nan-delay": _BadCall(
        Reschedule,
        lambda b: b.reschedule(Task("x"), math.nan),
        ValueError,
        "reschedule: delay must be a finite number of seconds >= 0 or a timedelta, got float nan",
    ),
    "reschedule-str-delay": _BadCall(
        Reschedule,
        lambda b: b.reschedule(Task("x"), "1"),
        TypeError,
        "reschedule: delay must be a finite number of seconds >= 0 or a timedelta, got str '1'",
    ),
    "resume_by_id-empty": _BadCall(
        ResumeById,
        lambda b: b.resume_by_id(""),
        ValueError,
        "resume_by_id: task_id must be a TaskId or a non-empty str, got str ''",
    ),
    "register_worker-empty": _BadCall(
        RegisterWorker,
        lambda b: b.register_worker(""),
        ValueError,
        "register_worker: name must be a non-empty str, got str ''",
    ),
    "register_worker-int": _BadCall(
        RegisterWorker,
        lambda b: b.register_worker(3),
        TypeError,
        "register_worker: name must be a non-empty str, got int 3",
    ),
}
"""Bad input and the exact error every backend raises for it (the checks of
``pyapalis.backends._kit._args``); a backend without the capability skips the case."""


class BackendConformance:
    """Subclass it and provide a ``harness`` fixture returning a :class:`BackendHarness`."""

    # -- plumbing ---------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def wall_clock(
        self, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
    ) -> WallClock:
        """``time.time()`` follows the test's virtual clock (see :class:`WallClock`)."""
        clock = WallClock(clock=autojump_clock)
        monkeypatch.setattr(time, "time", clock)
        return clock

    @pytest.fixture
    def handles(self, harness: BackendHarness) -> _Handles:
        return _Handles(harness)

    @pytest.fixture
    async def backend(self, handles: _Handles) -> AsyncIterator[Any]:
        yield await handles.open()
        await handles.close_all()

    @staticmethod
    async def _run(
        backend: Any,
        handler: Callable[..., Awaitable[Any]],
        *,
        until: Callable[[], bool],
        builder: Callable[[WorkerBuilder], WorkerBuilder] = lambda b: b,
        settle: float = 0.0,
        limit: float = 3600.0,
    ) -> None:
        """Run a worker on ``backend`` until ``until()`` holds, then ``settle`` more seconds."""
        worker = builder(WorkerBuilder("conformance").backend(backend)).build(handler)

        async def watch() -> None:
            while not until():
                await trio.sleep(0.01)
            await trio.sleep(settle)

        with trio.fail_after(limit):
            await worker.run_until(watch)

    # -- the rules --------------------------------------------------------------

    @_trio_test
    async def test_push_and_consume(
        self, backend: Any, autojump_clock: trio.testing.MockClock
    ) -> None:
        ids = [await backend.push(n) for n in range(3)]
        ids += await backend.push_bulk([3, 4])
        assert all(isinstance(task_id, TaskId) for task_id in ids)
        assert len(set(ids)) == 5
        seen: list[tuple[int, TaskId]] = []

        async def handler(item: int, task_id: TaskId) -> int:
            seen.append((item, task_id))
            return item * 10

        await self._run(backend, handler, until=lambda: len(seen) == 5, settle=1)
        assert sorted(seen) == list(zip(range(5), ids, strict=True))

    @_trio_test
    async def test_fifo(self, backend: Any, autojump_clock: trio.testing.MockClock) -> None:
        items = list(range(50))
        await backend.push_bulk(items[:25])
        for item in items[25:]:
            await backend.push(item)
        seen: list[int] = []

        async def handler(item: int) -> None:
            seen.append(item)

        await self._run(backend, handler, until=lambda: len(seen) == 50)
        assert seen == items

    @_trio_test
    async def test_push_task_of_an_existing_id_stores_nothing(
        self, backend: Any, handles: _Handles, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Also once the task has finished, from another handle, and after vacuum
        (what runs a periodic tick once however many processes push it)."""
        if not handles.harness.unique_ids:
            pytest.skip("the harness says the backend does not keep ids unique (unique_ids)")
        first = await backend.push_task(TaskBuilder("first").id("tick-1").build())
        assert first == TaskId("tick-1")
        assert await backend.push_task(TaskBuilder("queued").id("tick-1").build()) == first
        ran: list[str] = []

        async def handler(item: str) -> None:
            ran.append(item)

        await self._run(backend, handler, until=lambda: len(ran) == 1, settle=1)
        other = await handles.open()
        assert await other.push_task(TaskBuilder("finished").id("tick-1").build()) == first
        if _supports(backend, Vacuum):
            await backend.vacuum()
            assert await other.push_task(TaskBuilder("vacuumed").id("tick-1").build()) == first
        await backend.push("sentinel")
        await self._run(backend, handler, until=lambda: "sentinel" in ran, settle=1)
        assert ran == ["first", "sentinel"]

    @_trio_test
    async def test_retries_persist_attempts_then_stop(
        self, backend: Any, autojump_clock: trio.testing.MockClock
    ) -> None:
        task_id = await backend.push_task(TaskBuilder("flaky").attempts(5).build())
        attempts: list[int] = []

        async def handler(item: str, attempt: Attempt) -> None:
            attempts.append(attempt.current())
            raise ValueError(f"failure {attempt.current()}")

        await self._run(backend, handler, until=lambda: len(attempts) >= 5, settle=600)
        assert attempts == [1, 2, 3, 4, 5], "5 attempts, then no more deliveries"
        if _supports(backend, WaitForCompletion):
            [result] = await backend.check_status([task_id])
            assert result.status is Status.Failed
            with pytest.raises(Exception, match="failure 5"):
                result.unwrap()

    @_trio_test
    async def test_abort_is_killed_and_never_redelivered(
        self, backend: Any, autojump_clock: trio.testing.MockClock
    ) -> None:
        task_id = await backend.push_task(TaskBuilder("doomed").attempts(3).build())
        calls: list[str] = []

        async def handler(item: str) -> None:
            calls.append(item)
            raise AbortError("bad input")

        await self._run(backend, handler, until=lambda: bool(calls), settle=600)
        assert calls == ["doomed"]
        if _supports(backend, WaitForCompletion):
            [result] = await backend.check_status([task_id])
            assert result.status is Status.Killed

    @_trio_test
    async def test_scheduled_task_is_never_early(
        self, backend: Any, wall_clock: WallClock, autojump_clock: trio.testing.MockClock
    ) -> None:
        start = trio.current_time()
        run_at = wall_clock.after(30)
        await backend.push_task(TaskBuilder("later").run_at_timestamp(run_at).build())
        await backend.push("now")
        ran: list[tuple[str, float, float]] = []

        async def handler(item: str) -> None:
            ran.append((item, trio.current_time() - start, time.time()))

        await self._run(backend, handler, until=lambda: len(ran) == 2)
        assert [item for item, _, _ in ran] == ["now", "later"]
        _, waited, wall_at_start = ran[1]
        # Never early by the wall clock the backend reads (it moves only with
        # trio's clock), and not a poll interval late.
        assert wall_at_start >= run_at, ran
        assert waited <= 31, ran

    @_trio_test
    async def test_results_through_wait_for(
        self, backend: Any, autojump_clock: trio.testing.MockClock
    ) -> None:
        if not _supports(backend, WaitForCompletion):
            pytest.skip(f"{type(backend).__name__} does not implement WaitForCompletion")
        ok = await backend.push(21)
        bad = await backend.push(-1)
        killed = await backend.push(0)

        async def handler(item: int) -> int:
            if item < 0:
                raise ValueError("negative")
            if item == 0:
                raise AbortError("zero")
            return item * 2

        results = []

        async def collect() -> None:
            async for result in backend.wait_for([ok, bad, killed]):
                results.append(result)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect)
            await self._run(backend, handler, until=lambda: len(results) == 3)
        by_id = {result.task_id: result for result in results}
        assert by_id[ok].status is Status.Done
        assert by_id[ok].unwrap() == 42
        assert by_id[bad].status is Status.Failed
        with pytest.raises(Exception, match="negative"):
            by_id[bad].unwrap()
        assert by_id[killed].status is Status.Killed
        single = await backend.wait_for_single(ok)
        assert single.unwrap() == 42

    @_trio_test
    async def test_interrupted_task_comes_back_without_using_an_attempt(
        self, backend: Any, autojump_clock: trio.testing.MockClock
    ) -> None:
        await backend.push("long")
        seen: list[int] = []
        started = trio.Event()

        async def slow(item: str, attempt: Attempt) -> None:
            seen.append(attempt.current())
            started.set()
            await trio.sleep_forever()

        worker = WorkerBuilder("doomed").backend(backend).build(slow)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await started.wait()
            nursery.cancel_scope.cancel()  # the worker dies mid-task

        async def quick(item: str, attempt: Attempt) -> None:
            seen.append(attempt.current())

        await self._run(backend, quick, until=lambda: len(seen) == 2)
        assert seen == [1, 1], "the interrupted execution is not counted"

    @_trio_test
    async def test_task_of_a_dead_worker_is_resumed_as_an_attempt(
        self, backend: Any, handles: _Handles, autojump_clock: trio.testing.MockClock
    ) -> None:
        if handles.harness.crash is None:
            pytest.skip("not persistent: the harness has no crash() (tasks die with the process)")
        if not _supports(backend, ResumeAbandoned):
            pytest.fail(f"{type(backend).__name__} is persistent but lacks resume_abandoned()")
        task_id = await backend.push_task(TaskBuilder("survivor").attempts(5).build())
        await backend.push("second")
        taken = await backend.take()  # a worker takes it ...
        assert taken.parts.task_id == task_id
        await handles.crash(backend)  # ... and its process dies.
        revived = await handles.open()
        assert await revived.resume_abandoned() == 1
        seen: list[tuple[str, int]] = []

        async def handler(item: str, attempt: Attempt, ctx: WorkerContext) -> None:
            seen.append((item, attempt.current()))

        await self._run(revived, handler, until=lambda: len(seen) == 2, settle=1)
        assert sorted(seen) == [("second", 1), ("survivor", 2)], "the dead execution counts"

    @_trio_test
    @pytest.mark.parametrize("case", list(_BAD_CALLS), ids=list(_BAD_CALLS))
    async def test_bad_input_raises_the_same_error_everywhere(
        self, backend: Any, case: str, autojump_clock: trio.testing.MockClock
    ) -> None:
        bad = _BAD_CALLS[case]
        if not _supports(backend, bad.capability):
            pytest.skip(f"{type(backend).__name__} does not implement {bad.capability.__name__}")
        with pytest.raises(bad.error) as raised:
            await bad.call(backend)
        assert type(raised.value) is bad.error
        assert str(raised.value) == bad.message
