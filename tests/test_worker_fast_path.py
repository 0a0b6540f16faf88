"""Every way a worker runs a task must behave exactly alike.

A worker without layers runs the handler in its consumer loop (the compiled
``Invoker`` starts the execution, the ``Recorder`` records it: a success on a
backend with ``ack_nowait`` in compiled code). Every scenario here runs once on
that path with a handler of the args alone (``direct``), with a handler that
injects ``WorkerContext``, ``Attempt`` and ``TaskId`` (``injecting``), under a
worker timeout that never fires (``worker-timeout``), on a backend without
``ack_nowait`` (its success awaited), and on the layered path (a no-op task
layer, a no-op execution layer); the records (events, instants, attempts seen,
final statuses, stored results, task_count, what was handed back) must be
identical, and are checked against the contract.

Also: ``AckRecorder`` (MemoryStorage's compiled ack) and its pure-Python twin
behave alike.
"""

from __future__ import annotations

import gc
import importlib
import itertools
import math
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import outcome
import pytest
import trio
import trio.testing

from pyapalis import (
    AbortError,
    Attempt,
    BackoffMode,
    DeferredError,
    Event,
    EventKind,
    MemoryStorage,
    RetryAfterError,
    RetryPolicy,
    Status,
    Task,
    TaskBuilder,
    TaskFailedError,
    TaskId,
    TaskTimeoutError,
    Worker,
    WorkerBuilder,
    WorkerContext,
)
from pyapalis._worker._worker import CHECKPOINT_EVERY

NO_EXTENSIONS = importlib.import_module("conftest").NO_EXTENSIONS

MODES = ["direct", "injecting", "worker-timeout", "no-ack-nowait", "task-layer", "execution-layer"]
"""The first four run in the consumer loop; the layer modes go through the stack."""
LAYERED = {"task-layer", "execution-layer"}


class Passthrough:
    """A task layer that adds a service doing nothing: the worker takes its general path."""

    def layer(self, inner: Callable[[Task], Awaitable[Any]]) -> Callable[[Task], Awaitable[Any]]:
        async def service(task: Task) -> Any:
            return await inner(task)

        return service


class ExecutionPassthrough(Passthrough):
    """The same, as an execution layer (inside the backend acknowledgement)."""

    wraps_execution = True


class WithoutAckNowait:
    """A MemoryStorage seen through a backend that has no ``ack_nowait``."""

    def __init__(self, inner: MemoryStorage) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "ack_nowait":
            raise AttributeError(name)
        return getattr(self._inner, name)


def build(
    mode: str,
    storage: MemoryStorage,
    handler: Callable[..., Any],
    *,
    policy: RetryPolicy | None = None,
    concurrency: int = 1,
    listener: Callable[[WorkerContext, Event], None] | None = None,
) -> Worker:
    backend: Any = WithoutAckNowait(storage) if mode == "no-ack-nowait" else storage
    builder = WorkerBuilder(f"fast-path-{mode}").backend(backend).concurrency(concurrency)
    if mode == "injecting":
        handler = injecting(handler)
    elif mode == "worker-timeout":
        builder.timeout(1_000_000)  # every execution runs under a limit that never fires
    elif mode == "task-layer":
        builder.layer(Passthrough())
    elif mode == "execution-layer":
        builder.layer(ExecutionPassthrough())
    if policy is not None:
        builder.retry(policy)
    if listener is not None:
        builder.on_event(listener)
    worker = builder.build(handler)
    layered = worker.dispatch.layered is not None
    assert layered is (mode in LAYERED), f"{mode}: the worker took the wrong path"
    return worker


def injecting(handler: Callable[..., Any]) -> Callable[..., Any]:
    """``handler`` as a handler that also takes a WorkerContext, an Attempt and a TaskId."""

    async def injected(item: Any, ctx: WorkerContext, attempt: Attempt, task_id: TaskId) -> Any:
        assert isinstance(ctx, WorkerContext) and isinstance(attempt, Attempt)
        assert isinstance(task_id, TaskId)
        return await handler(item)

    return injected


class Run:
    """What one scenario run records, with task ids as push indexes and times
    relative to the start of the run."""

    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = tasks
        self.index = {task.parts.task_id: i for i, task in enumerate(tasks)}
        self.start = trio.current_time()
        self.raised: list[BaseException] = []
        self.calls: list[tuple[float, int, int, str, int]] = []
        self.events: list[tuple[Any, ...]] = []

    def now(self) -> float:
        # Rounded: the runs start at different virtual instants.
        return round(trio.current_time() - self.start, 6)

    def call(self, i: int, context: WorkerContext) -> int:
        """Record an execution of task ``i`` as the handler sees it; its attempt."""
        parts = self.tasks[i].parts
        attempt: int = parts.attempt.current()
        self.calls.append((self.now(), i, attempt, parts.status.value, context.task_count))
        return attempt

    def raise_(self, error: BaseException) -> None:
        self.raised.append(error)
        raise error

    def listener(self, _ctx: WorkerContext, event: Event) -> None:
        error = event.error
        if error is not None:
            # The exception itself: the one the handler raised, when it raised one.
            raised = [n for n, e in enumerate(self.raised) if e is error]
            described: Any = ("raised", raised[0]) if raised else (type(error).__name__, str(error))
        else:
            described = None
        task = self.index.get(event.task_id) if event.task_id is not None else None
        self.events.append((self.now(), event.kind.value, task, described, event.result))

    def finals(self) -> list[tuple[str, int]]:
        return [(t.parts.status.value, t.parts.attempt.current()) for t in self.tasks]


async def stored(storage: MemoryStorage, tasks: list[Task]) -> list[tuple[str, Any]]:
    results = await storage.check_status([t.parts.task_id for t in tasks])
    described: list[tuple[str, Any]] = []
    for result in results:
        if isinstance(result.result, outcome.Value):
            described.append((result.status.value, ("value", result.result.value)))
        elif isinstance(result.result, outcome.Error):
            described.append((result.status.value, ("error", str(result.result.error))))
        else:
            described.append((result.status.value, None))
    return described


async def push_all(storage: MemoryStorage, tasks: list[Task]) -> None:
    for task in tasks:
        await storage.push_task(task)


# -- the scenarios ------------------------------------------------------------------


async def outcomes_scenario(mode: str) -> dict[str, Any]:
    """Every kind of outcome, with retries through the backend and backoff."""
    storage = MemoryStorage()
    tasks = [
        Task(0),  # returns None: Done
        Task(1),  # returns a value: Done, the value stored
        Task(2),  # returns False every time: a failure, retried, Failed
        Task(3),  # raises once, then succeeds on the retry (after the backoff)
        TaskBuilder(4).attempts(10).build(),  # AbortError: Killed, never retried
        Task(5),  # RetryAfterError: retried after its own delay
        Task(6),  # DeferredError twice: retried at once
        TaskBuilder(7).attempts(1).build(),  # its own budget (1) beats the policy's
        TaskBuilder(8).timeout(2).build(),  # its own timeout, always exceeded: Failed
        TaskBuilder(9).timeout(10).build(),  # its own timeout, met: Done
        TaskBuilder(10).timeout(2).build(),  # times out once, then raises, then succeeds
    ]
    await push_all(storage, tasks)
    worker: Worker
    run = Run(tasks)

    async def handler(i: int) -> Any:
        n = run.call(i, worker.context)
        await trio.sleep(1)
        if i == 1:
            return {"value": i}
        if i == 2:
            return False
        if i == 3 and n == 1:
            run.raise_(ValueError(f"boom {i}.{n}"))
        if i == 4:
            run.raise_(AbortError(f"abort {i}"))
        if i == 5 and n == 1:
            run.raise_(RetryAfterError(f"later {i}", 7))
        if i == 6 and n <= 2:
            run.raise_(DeferredError(f"deferred {i}.{n}"))
        if i == 7:
            run.raise_(RuntimeError(f"once {i}"))
        if i == 8:
            await trio.sleep(10)
        if i == 10:
            if n == 1:
                await trio.sleep(10)
            elif n == 2:
                run.raise_(KeyError(i))
        return None

    worker = build(
        mode,
        storage,
        handler,
        policy=RetryPolicy.retries(2, BackoffMode.constant(5)),
        listener=run.listener,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1000)
        worker.context.stop()
    return {
        "calls": run.calls,
        "events": run.events,
        "finals": run.finals(),
        "stored": await stored(storage, tasks),
        "left": len(storage),
        "task_count": worker.context.task_count,
    }


async def test_outcomes_are_identical_on_every_path(autojump_clock: trio.testing.MockClock) -> None:
    records = {mode: await outcomes_scenario(mode) for mode in MODES}
    direct = records["direct"]
    for mode in MODES[1:]:
        assert records[mode] == direct, mode
    # ... and they are the contract's.
    assert direct["finals"] == [
        ("Done", 1),
        ("Done", 1),
        ("Failed", 3),
        ("Done", 2),
        ("Killed", 1),
        ("Done", 2),
        ("Done", 3),
        ("Failed", 1),
        ("Failed", 3),
        ("Done", 1),
        ("Done", 3),
    ]
    assert direct["stored"][1] == ("Done", ("value", {"value": 1}))
    assert direct["stored"][2] == ("Failed", ("error", "TaskFailedError: Task returned false"))
    assert direct["left"] == 0
    assert direct["task_count"] == 0
    # The first execution sees attempt 1, Running, and itself counted in task_count.
    first_calls = {}
    for _at, i, attempt, status, count in direct["calls"]:
        first_calls.setdefault(i, attempt)
        assert status == "Running"
        assert count == 1
    assert set(first_calls.values()) == {1}
    errors = [e for e in direct["events"] if e[1] == "Error"]
    # Every error event carries the handler's own exception (or the worker's).
    assert ("TaskFailedError", "Task returned false") in [e[3] for e in errors]
    assert any(e[3][0] == "TaskTimeoutError" for e in errors)
    assert all(e[3][0] in {"raised", "TaskFailedError", "TaskTimeoutError"} for e in errors)
    assert len([e for e in errors if e[3][0] == "raised"]) == 7
    successes = [e for e in direct["events"] if e[1] == "Success"]
    assert (1, {"value": 1}) in [(e[2], e[4]) for e in successes]
    # Retries went back through the backend: the backoff, RetryAfter's own delay,
    # Deferred at once.
    times = {i: [at for at, j, *_ in direct["calls"] if j == i] for i in range(11)}
    gaps = {i: [b - a for a, b in itertools.pairwise(t)] for i, t in times.items()}
    assert all(gap >= 6 for gap in gaps[3])  # 1 s of work, then at least the 5 s backoff
    assert all(gap >= 8 for gap in gaps[5])  # RetryAfterError(7)
    assert direct["events"][0][1] == "Start"
    assert direct["events"][-1][1] == "Stop"


@pytest.mark.parametrize("mode", MODES)
async def test_the_error_event_carries_the_exception_itself(
    mode: str, autojump_clock: trio.testing.MockClock
) -> None:
    storage = MemoryStorage()
    task_id = await storage.push(1)
    seen: list[Event] = []
    errors: list[BaseException] = []

    async def handler(item: int) -> None:
        errors.append(ValueError(item))
        raise errors[-1]

    worker = build(mode, storage, handler, listener=lambda _c, ev: seen.append(ev))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.stop()
    [error_event] = [ev for ev in seen if ev.kind is EventKind.Error]
    assert error_event.error is errors[0]
    assert error_event.task_id == task_id


async def interrupt_scenario(mode: str, how: str) -> dict[str, Any]:
    """A KeyboardInterrupt in a handler, or a cancellation from outside."""
    storage = MemoryStorage()
    tasks = [Task(i) for i in range(4)]
    await push_all(storage, tasks)
    run = Run(tasks)
    worker: Worker

    async def handler(i: int) -> None:
        run.call(i, worker.context)
        await trio.sleep(1)
        if how == "keyboard" and i == 1:
            raise KeyboardInterrupt

    worker = build(mode, storage, handler, listener=run.listener)
    raised = None
    if how == "keyboard":
        with pytest.raises(KeyboardInterrupt), trio.fail_after(100):
            await worker.run()
        raised = "KeyboardInterrupt"
    else:
        with trio.move_on_after(1.5):
            await worker.run()
    first_back = storage.take_nowait()
    assert first_back is not None
    return {
        "raised": raised,
        "at": run.now(),
        "calls": run.calls,
        "events": run.events,
        "finals": run.finals(),
        "queued": len(storage) + 1,
        "first_back": tasks.index(first_back),
        "task_count": worker.context.task_count,
        "stopped": worker.context.is_stopped,
    }


@pytest.mark.parametrize("how", ["keyboard", "cancel"])
async def test_an_interrupted_task_is_handed_back_uncounted_on_every_path(
    how: str, autojump_clock: trio.testing.MockClock
) -> None:
    records = {mode: await interrupt_scenario(mode, how) for mode in MODES}
    direct = records["direct"]
    for mode in MODES[1:]:
        assert records[mode] == direct, mode
    assert direct["finals"] == [("Done", 1), ("Pending", 0), ("Pending", 0), ("Pending", 0)]
    assert direct["queued"] == 3
    assert direct["first_back"] == 1  # handed back at the front
    assert direct["task_count"] == 0
    assert direct["stopped"] is True
    assert direct["at"] == (2.0 if how == "keyboard" else 1.5)
    assert [e[1] for e in direct["events"]] == ["Start", "Success", "Stop"]


async def stop_scenario(mode: str, concurrency: int) -> dict[str, Any]:
    """ctx.stop() from a handler: in-flight tasks finish, the rest stay queued."""
    storage = MemoryStorage()
    tasks = [Task(i) for i in range(10)]
    await push_all(storage, tasks)
    run = Run(tasks)
    worker: Worker

    async def handler(i: int) -> None:
        run.call(i, worker.context)
        if i == 4:
            worker.context.stop()
        await trio.sleep(1 + i / 10)  # no two tasks end at the same instant

    worker = build(mode, storage, handler, concurrency=concurrency, listener=run.listener)
    await worker.run()
    return {
        "at": run.now(),
        "calls": run.calls,
        "events": run.events,
        "finals": run.finals(),
        "queued": len(storage),
        "task_count": worker.context.task_count,
        "stopped": worker.context.is_stopped,
    }


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_graceful_stop_and_task_count_on_every_path(
    concurrency: int, autojump_clock: trio.testing.MockClock
) -> None:
    records = {mode: await stop_scenario(mode, concurrency) for mode in MODES}
    direct = records["direct"]
    for mode in MODES[1:]:
        assert records[mode] == direct, mode
    # The tasks in flight at stop() finished; nothing was pulled after it.
    assert direct["finals"] == [("Done", 1)] * 5 + [("Pending", 0)] * 5
    assert direct["queued"] == 5
    assert direct["task_count"] == 0
    assert direct["stopped"] is True
    assert direct["events"][-1][1] == "Stop"
    counts = [count for *_, count in direct["calls"]]
    assert max(counts) == concurrency


@pytest.mark.parametrize("mode", MODES)
async def test_the_loop_checkpoints_every_k_tasks(mode: str) -> None:
    storage = MemoryStorage()
    n = 5 * CHECKPOINT_EVERY + 7
    for i in range(n):
        storage.push_nowait(i)
    handled = 0
    steps: list[int] = []  # tasks handled in each step of a trio task (between yields)
    worker: Worker

    async def handler(_item: int) -> None:  # never awaits: only the loop checkpoints
        nonlocal handled
        handled += 1
        if handled == n:
            worker.context.stop()

    class Steps(trio.abc.Instrument):
        before = 0  # (added in the middle of a step)

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            self.before = handled

        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            steps.append(handled - self.before)

    worker = build(mode, storage, handler)
    instrument = Steps()
    trio.lowlevel.add_instrument(instrument)
    try:
        await worker.run()
    finally:
        trio.lowlevel.remove_instrument(instrument)
    assert handled == n
    assert sum(steps) == n
    assert max(steps) <= CHECKPOINT_EVERY
    if mode != "no-ack-nowait":  # (its awaited ack checkpoints at every task)
        assert max(steps) == CHECKPOINT_EVERY


async def idle_scenario(mode: str) -> tuple[Any, ...]:
    """Tasks handed to a parked loop (take_or_wake), with and without their own timeout."""
    storage = MemoryStorage()
    tasks = [Task(0), TaskBuilder(1).timeout(1).build(), Task(2)]
    run = Run(tasks)
    worker: Worker

    async def handler(i: int) -> None:
        run.call(i, worker.context)
        await trio.sleep(3 if i == 1 else 0.5)

    worker = build(mode, storage, handler, listener=run.listener)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        for task in tasks:
            await trio.sleep(5)
            await storage.push_task(task)
        await trio.sleep(5)
        worker.context.stop()
    return run.calls, run.events, run.finals()


async def test_a_task_pushed_while_idle_takes_the_same_path(
    autojump_clock: trio.testing.MockClock,
) -> None:
    records = {mode: await idle_scenario(mode) for mode in MODES}
    for mode in MODES[1:]:
        assert records[mode] == records["direct"], mode
    calls, events, finals = records["direct"]
    assert finals == [("Done", 1), ("Failed", 1), ("Done", 1)]
    assert [e[1] for e in events] == [
        "Start",
        "Idle",
        "Success",
        "Idle",
        "Error",
        "Idle",
        "Success",
        "Idle",
        "Stop",
    ]
    assert events[4][3] == ("TaskTimeoutError", str(TaskTimeoutError(1.0)))
    assert [at for at, *_ in calls] == [5.0, 10.0, 15.0]


# -- which workers run the handler in the loop ----------------------------------------------


async def test_every_worker_without_layers_runs_the_handler_in_its_loop() -> None:
    storage = MemoryStorage()

    async def args_only(item: int) -> None:
        pass

    async def with_context(item: int, ctx: WorkerContext) -> None:
        pass

    async def with_attempt(item: int, attempt: Attempt, task_id: TaskId) -> None:
        pass

    def sync(item: int) -> None:
        pass

    def in_loop(builder: WorkerBuilder, handler: Callable[..., Any]) -> bool:
        return builder.build(handler).dispatch.layered is None

    def builder() -> WorkerBuilder:
        return WorkerBuilder("w").backend(storage)

    for handler in (args_only, with_context, with_attempt, sync):
        assert in_loop(builder(), handler)
        assert in_loop(builder().concurrency(5), handler)
        assert in_loop(builder().retry(RetryPolicy.retries(2)), handler)
        assert in_loop(builder().timeout(5), handler)
        assert in_loop(WorkerBuilder("w").backend(WithoutAckNowait(storage)), handler)
        assert not in_loop(builder().layer(Passthrough()), handler)
        assert not in_loop(builder().layer(ExecutionPassthrough()), handler)


# -- MemoryStorage's compiled ack, and its twin ---------------------------------------------


@pytest.fixture(
    params=[
        pytest.param(
            "cython",
            marks=pytest.mark.skipif(
                NO_EXTENSIONS, reason="PYAPALIS_NO_EXTENSIONS=1: the compiled core is disabled"
            ),
        ),
        "python",
    ]
)
def impl(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType]:
    """``(task core, execution helpers)``: compiled, or the pure-Python twins."""
    if request.param == "cython":
        core = importlib.import_module("pyapalis._core")
        return core, core
    return importlib.import_module("pyapalis._twin"), importlib.import_module("pyapalis._twin")


class Owner:
    def __init__(self) -> None:
        self.finished: deque[Any] = deque()
        self.slow: list[tuple[Any, ...]] = []
        self.failed_listeners: list[tuple[Any, BaseException]] = []

    def record_outcome(self, task: Any, status: Status, result: Any, error: Any) -> None:
        self.slow.append((task, status, result, error))

    def listener_failed(self, listener: Any, error: BaseException) -> None:
        self.failed_listeners.append((listener, error))


def test_ack_recorder(impl: tuple[ModuleType, ModuleType]) -> None:
    core, execution = impl
    owner = Owner()
    recorder = execution.AckRecorder(owner.finished.append, owner)
    assert recorder.attention is False
    assert recorder.listeners == ()
    task = core.Task(1)
    # A task Done is recorded here: alone without a result, with it if any.
    recorder.ack(task, Status.Done, None, None)
    with_result = core.Task(2)
    recorder.ack(with_result, Status.Done, "result", None)
    assert task.parts.status is Status.Done
    assert with_result.parts.status is Status.Done
    assert list(owner.finished) == [task, (with_result, Status.Done, "result")]
    assert owner.slow == []
    # Anything else goes to the owner, unchanged and unrecorded here.
    error = ValueError("x")
    others = [
        (core.Task(3), Status.Failed, None, error),
        (core.Task(4), Status.Killed, None, None),
        (core.Task(5), Status.Done, None, error),
    ]
    for args in others:
        recorder.ack(*args)
    assert owner.slow == others
    assert all(t.parts.status is Status.Pending for t, *_ in others)
    assert len(owner.finished) == 2
    # ... and so does everything while attention is set.
    recorder.attention = True
    late = core.Task(6)
    recorder.ack(late, Status.Done, None, None)
    assert owner.slow[-1] == (late, Status.Done, None, None)
    recorder.attention = False
    with pytest.raises((TypeError, AttributeError)):
        recorder.ack("not a task", Status.Done, None, None)
    with pytest.raises(TypeError):
        execution.AckRecorder(None, owner)


def test_ack_recorder_calls_listeners_after_recording(
    impl: tuple[ModuleType, ModuleType],
) -> None:
    core, execution = impl
    owner = Owner()
    recorder = execution.AckRecorder(owner.finished.append, owner)
    heard: list[tuple[Any, ...]] = []
    trouble = RuntimeError("listener trouble")

    def first(task: Any, status: Status, result: Any, error: Any) -> None:
        assert task.parts.status is status  # recorded before anyone is told
        assert len(owner.finished) == 1
        heard.append(("first", task, status, result, error))

    def failing(*outcome: Any) -> None:
        raise trouble

    def last(*outcome: Any) -> None:
        heard.append(("last", *outcome))

    recorder.listeners = (first, failing, last)
    task = core.Task(1)
    recorder.ack(task, Status.Done, 42, None)
    assert heard == [("first", task, Status.Done, 42, None), ("last", task, Status.Done, 42, None)]
    assert owner.failed_listeners == [(failing, trouble)]
    # The owner's slow path tells them through the recorder too.
    heard.clear()
    other = core.Task(2)
    recorder.listeners = (last,)
    recorder.tell(other, Status.Failed, None, trouble)
    assert heard == [("last", other, Status.Failed, None, trouble)]


def test_ack_recorder_holds_its_owner_weakly(impl: tuple[ModuleType, ModuleType]) -> None:
    core, execution = impl
    owner = Owner()
    finished = owner.finished
    recorder = execution.AckRecorder(finished.append, owner)
    ref = weakref.ref(owner)
    del owner
    assert ref() is None
    recorder.ack(core.Task(1), Status.Done, None, None)  # needs no owner
    assert len(finished) == 1
    with pytest.raises(ReferenceError):
        recorder.ack(core.Task(2), Status.Failed, None, None)


def test_memory_storage_acks_through_its_recorder() -> None:
    storage = MemoryStorage()
    # The result store's recorder: compiled unless the extension is disabled.
    assert getattr(storage.ack_nowait, "__qualname__", "") == "AckRecorder.ack"
    assert storage.statistics().fast_acks is True
    # Outcome listeners are called from the compiled recorder.
    storage.add_outcome_listener(print)
    assert storage.statistics().fast_acks is True
    storage.remove_outcome_listener(print)

    class Overrides(MemoryStorage):
        def ack_nowait(self, task: Task, status: Status, result: Any, error: Any) -> None:
            super().ack_nowait(task, status, result, error)

    overriding = Overrides()
    assert overriding.ack_nowait.__func__ is Overrides.ack_nowait  # type: ignore[attr-defined]


def test_memory_storage_pushes_through_its_queue_unless_overridden() -> None:
    storage = MemoryStorage(maxsize=1)
    assert storage.push_nowait == storage._queue.push_nowait
    storage.push_nowait("a")
    with pytest.raises(trio.WouldBlock, match=r"MemoryStorage is full \(maxsize=1\)"):
        storage.push_nowait("b")
    pushed: list[Any] = []

    class Overrides(MemoryStorage):
        def push_nowait(self, args: Any) -> TaskId:
            pushed.append(args)
            return super().push_nowait(args)

    overriding = Overrides()
    task_id = overriding.push_nowait("c")
    assert pushed == ["c"]
    assert overriding.take_nowait().parts.task_id == task_id


async def test_pushes_on_the_trio_thread_hand_each_parked_loop_one_task() -> None:
    storage = MemoryStorage()
    started: list[int] = []
    release = trio.Event()

    async def handler(item: int) -> None:
        started.append(item)
        await release.wait()

    worker = WorkerBuilder("hand-off").backend(storage).concurrency(3).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.testing.wait_all_tasks_blocked()
        assert storage.statistics().consumers_waiting == 3
        for item in range(4):
            storage.push_nowait(item)
        assert storage.statistics().consumers_waiting == 0 and len(storage) == 1  # handed over
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(started) == [0, 1, 2]  # the first three; trio picks who runs first
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert started[3:] == [3] and len(storage) == 0
        worker.context.stop()


def test_memory_storage_dies_without_the_cycle_collector() -> None:
    gc.disable()
    try:
        storage = MemoryStorage()
        ref = weakref.ref(storage)
        del storage
        assert ref() is None
    finally:
        gc.enable()


async def test_memory_storage_ack_nowait_outcomes_match_the_python_method() -> None:
    """The recorder's compiled ack and the result store's Python path leave the same state."""
    fast, slow = MemoryStorage(), MemoryStorage()
    async with trio.open_nursery() as nursery:
        # Someone waits for a result: every ack of ``slow`` takes the Python path.
        nursery.start_soon(slow.wait_for_single, TaskId.generate())
        await trio.testing.wait_all_tasks_blocked()
        assert not slow.statistics().fast_acks
        await _ack_the_same_outcomes(fast, slow)
        nursery.cancel_scope.cancel()


async def _ack_the_same_outcomes(fast: MemoryStorage, slow: MemoryStorage) -> None:
    for storage in (fast, slow):
        for i in range(6):
            storage.push_nowait(i)
    outcomes: list[tuple[Status, Any, BaseException | None]] = [
        (Status.Done, None, None),
        (Status.Done, "value", None),
        (Status.Failed, None, TaskFailedError()),
        (Status.Killed, None, AbortError("stop")),
        (Status.Done, None, None),
        (Status.Done, math.pi, None),
    ]
    ids = []
    for status, result, error in outcomes:
        a, b = fast.take_nowait(), slow.take_nowait()
        assert a is not None and b is not None
        fast.ack_nowait(a, status, result, error)
        slow.ack_nowait(b, status, result, error)
        ids.append((a.parts.task_id, b.parts.task_id))
    got_fast = await fast.check_status([a for a, _ in ids])
    got_slow = await slow.check_status([b for _, b in ids])
    assert [(r.status, repr(r.result)) for r in got_fast] == [
        (r.status, repr(r.result)) for r in got_slow
    ]
    assert fast.statistics().results_kept == slow.statistics().results_kept == 6
