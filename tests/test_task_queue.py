"""TaskQueue, the storage behind MemoryStorage: compiled and pure-Python twins.

Every test runs on both implementations (``pyapalis._core.TaskQueue`` with the
compiled ``Task``, ``pyapalis._twin.TaskQueue`` with the pure-Python one).
The queue knows nothing of trio: a fake clock drives its schedule here.
"""

from __future__ import annotations

import gc
import importlib
import math
import random
import sys
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from conftest import NO_EXTENSIONS


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now


@dataclass
class Impl:
    name: str
    TaskQueue: Any
    Task: Any
    TaskId: Any
    OneShotValue: Any


@pytest.fixture(
    params=[
        pytest.param(
            "cython",
            marks=pytest.mark.skipif(NO_EXTENSIONS, reason="the compiled core is disabled"),
        ),
        "python",
    ]
)
def impl(request: pytest.FixtureRequest) -> Impl:
    if request.param == "cython":
        core: ModuleType = importlib.import_module("pyapalis._core")
        return Impl("cython", core.TaskQueue, core.Task, core.TaskId, core.OneShotValue)
    pycore = importlib.import_module("pyapalis._twin")
    pyqueue = importlib.import_module("pyapalis._twin")
    return Impl("python", pyqueue.TaskQueue, pycore.Task, pycore.TaskId, pyqueue.OneShotValue)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(impl: Impl, args: Any, task_id: str | None = None) -> Any:
    task = impl.Task(args)
    task.parts.task_id = impl.TaskId(task_id if task_id is not None else f"id-{args}")
    return task


def drain(queue: Any) -> list[Any]:
    out = []
    while (task := queue.pop()) is not None:
        out.append(task.args)
    return out


# -- construction ----------------------------------------------------------------


def test_the_twins_are_the_expected_classes(impl: Impl) -> None:
    queue = impl.TaskQueue(FakeClock())
    module = type(queue).__module__
    assert module == ("pyapalis._core" if impl.name == "cython" else "pyapalis._twin._deque")
    assert queue.maxsize == 0
    assert len(queue) == 0
    assert not queue
    assert queue.pop() is None


def test_clock_must_be_callable(impl: Impl) -> None:
    with pytest.raises(TypeError, match="clock must be callable"):
        impl.TaskQueue(1.0)


def test_negative_maxsize_is_refused(impl: Impl) -> None:
    with pytest.raises(ValueError, match="maxsize must be >= 0"):
        impl.TaskQueue(FakeClock(), -1)


def test_only_tasks_are_accepted(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    with pytest.raises(TypeError):
        queue.push("not a task")
    with pytest.raises(TypeError):
        queue.push_front(None)
    with pytest.raises(TypeError):
        queue.schedule(42, 1.0)
    assert len(queue) == 0


# -- FIFO ---------------------------------------------------------------------------


def test_fifo(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    for i in range(500):  # past the initial capacity: the ring grows
        assert queue.push(make(impl, i)) is True
    assert len(queue) == 500
    assert queue.ready_count == 500
    assert queue.scheduled_count == 0
    assert drain(queue) == list(range(500))
    assert len(queue) == 0
    assert queue.pop() is None


def test_fifo_with_interleaved_push_and_pop(impl: Impl, clock: FakeClock) -> None:
    # Keeps the ring's head wrapping around its end.
    queue = impl.TaskQueue(clock)
    expected = []
    got = []
    n = 0
    for round_ in range(200):
        for _ in range(round_ % 7 + 1):
            queue.push(make(impl, n))
            expected.append(n)
            n += 1
        for _ in range(round_ % 5 + 1):
            task = queue.pop()
            if task is not None:
                got.append(task.args)
    got.extend(drain(queue))
    assert got == expected


def test_push_args_generates_ulid_ids_and_is_fifo(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    ids = [queue.push_args(i) for i in range(10)]
    assert all(isinstance(task_id, impl.TaskId) for task_id in ids)
    assert len(set(ids)) == 10
    assert all(task_id.is_ulid for task_id in ids)
    tasks = [queue.pop() for _ in range(10)]
    assert [t.args for t in tasks] == list(range(10))
    assert [t.parts.task_id for t in tasks] == ids


def test_push_args_bulk(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    ids = queue.push_args_bulk(x * 2 for x in range(300))
    assert len(ids) == 300
    assert len(set(ids)) == 300
    tasks = [queue.pop() for _ in range(300)]
    assert [t.args for t in tasks] == [x * 2 for x in range(300)]
    assert [t.parts.task_id for t in tasks] == ids


def test_push_front(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    for i in range(3):
        queue.push(make(impl, i))
    first = queue.pop()
    queue.push_front(first)
    queue.push_front(make(impl, "front"))
    assert drain(queue) == ["front", 0, 1, 2]


# -- the schedule ---------------------------------------------------------------------


def test_scheduled_task_is_not_handed_out_before_its_deadline(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    assert queue.schedule(make(impl, "later"), 10.0) is True
    assert len(queue) == 1
    assert queue.scheduled_count == 1
    assert queue.ready_count == 0
    assert queue.next_deadline() == 10.0
    clock.now = 9.999
    assert queue.pop() is None
    assert len(queue) == 1
    clock.now = 10.0
    task = queue.pop()
    assert task is not None and task.args == "later"
    assert len(queue) == 0
    assert queue.next_deadline() == math.inf


def test_schedule_orders_by_deadline_then_insertion(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    deadlines = [5.0, 1.0, 3.0, 1.0, 2.0, 5.0, 1.0, 4.0, 3.0]
    for i, deadline in enumerate(deadlines):
        queue.schedule(make(impl, i), deadline)
    clock.now = 100.0
    expected = [i for _, i in sorted((d, i) for i, d in enumerate(deadlines))]
    assert drain(queue) == expected


def test_schedule_order_many_random(impl: Impl, clock: FakeClock) -> None:
    rng = random.Random(7)
    queue = impl.TaskQueue(clock)
    deadlines = [float(rng.randrange(50)) for _ in range(1000)]  # many ties
    for i, deadline in enumerate(deadlines):
        queue.schedule(make(impl, i), deadline)
    assert queue.next_deadline() == min(deadlines)
    clock.now = 1e9
    expected = [i for _, i in sorted((d, i) for i, d in enumerate(deadlines))]
    assert drain(queue) == expected


def test_release_due_moves_only_due_tasks_behind_ready_ones(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    queue.push(make(impl, "ready"))
    queue.schedule(make(impl, "t3"), 3.0)
    queue.schedule(make(impl, "t1"), 1.0)
    queue.schedule(make(impl, "t2"), 2.0)
    assert queue.release_due(0.5) == 0
    assert queue.release_due(2.0) == 2
    assert queue.ready_count == 3
    assert queue.scheduled_count == 1
    assert queue.next_deadline() == 3.0
    # The released tasks go to the back, in deadline order; t3 stays scheduled.
    clock.now = 2.5
    assert drain(queue) == ["ready", "t1", "t2"]
    assert len(queue) == 1
    assert queue.release_due(3.0) == 1
    assert drain(queue) == ["t3"]


def test_pop_releases_due_tasks_when_nothing_is_ready(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    queue.schedule(make(impl, "a"), 1.0)
    clock.calls = 0
    assert queue.pop() is None
    assert clock.calls == 1  # it looked at the clock
    clock.now = 1.0
    task = queue.pop()
    assert task is not None and task.args == "a"


def test_pop_does_not_read_the_clock_without_a_schedule(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    for i in range(100):
        queue.push(make(impl, i))
    drain(queue)
    assert clock.calls == 0


def test_a_due_task_is_not_stuck_behind_a_stream_of_new_ones(impl: Impl, clock: FakeClock) -> None:
    # With ready tasks waiting, pop looks at the clock every 64 pops: a due
    # task is released then, ahead of everything pushed afterwards.
    queue = impl.TaskQueue(clock)
    for i in range(100):
        queue.push(make(impl, i))
    queue.schedule(make(impl, "due"), 1.0)
    clock.now = 5.0
    first = [queue.pop().args for _ in range(64)]
    assert first == list(range(64))
    assert queue.scheduled_count == 0  # released on the 64th pop
    for i in range(100, 200):
        queue.push(make(impl, i))
    rest = drain(queue)
    assert rest == [*range(64, 100), "due", *range(100, 200)]


def test_nan_deadline_is_refused(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    with pytest.raises(ValueError, match="NaN"):
        queue.schedule(make(impl, 1), math.nan)
    assert len(queue) == 0


# -- maxsize ------------------------------------------------------------------------


def test_maxsize_refuses_without_force(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock, 3)
    assert queue.maxsize == 3
    assert queue.push(make(impl, 1)) is True
    assert queue.schedule(make(impl, 2), 10.0) is True  # scheduled tasks count too
    assert not queue.is_full()
    assert queue.push_args(3) is not None
    assert queue.is_full()
    assert queue.push(make(impl, 4)) is False
    assert queue.schedule(make(impl, 5), 1.0) is False
    assert queue.push_args(6) is None
    assert len(queue) == 3
    # force ignores the bound: a retry is never refused
    assert queue.push(make(impl, 7), True) is True
    assert queue.schedule(make(impl, 8), 20.0, True) is True
    assert len(queue) == 5
    queue.push_front(make(impl, 0))  # handing a task back is never refused
    assert len(queue) == 6
    clock.now = 100.0
    assert drain(queue) == [0, 1, 3, 7, 2, 8]
    assert not queue.is_full()
    assert queue.push(make(impl, 9)) is True


def test_room_comes_back_after_a_pop(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock, 1)
    assert queue.push_args("a") is not None
    assert queue.push_args("b") is None
    assert queue.pop().args == "a"
    assert queue.push_args("b") is not None
    assert drain(queue) == ["b"]


def test_push_args_bulk_ignores_maxsize(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock, 2)
    assert len(queue.push_args_bulk(range(5))) == 5
    assert len(queue) == 5
    assert queue.is_full()


# -- remove, tasks(), counters -----------------------------------------------------


def test_remove_from_the_ready_ring(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    for i in range(10):
        queue.push(make(impl, i))
    queue.pop()  # the head is no longer at index 0
    removed = queue.remove(impl.TaskId("id-5"))
    assert removed is not None and removed.args == 5
    assert queue.remove(impl.TaskId("id-5")) is None
    assert queue.remove(impl.TaskId("id-0")) is None  # already popped
    assert len(queue) == 8
    assert drain(queue) == [1, 2, 3, 4, 6, 7, 8, 9]


def test_remove_from_the_schedule_keeps_the_heap_ordered(impl: Impl, clock: FakeClock) -> None:
    rng = random.Random(3)
    queue = impl.TaskQueue(clock)
    deadlines = {i: float(rng.randrange(1000)) for i in range(200)}
    for i, deadline in deadlines.items():
        queue.schedule(make(impl, i), deadline)
    for i in rng.sample(range(200), 60):
        removed = queue.remove(impl.TaskId(f"id-{i}"))
        assert removed is not None and removed.args == i
        del deadlines[i]
    assert len(queue) == 140
    assert queue.scheduled_count == 140
    assert queue.next_deadline() == min(deadlines.values())
    clock.now = 1e6
    expected = [i for _, i in sorted((d, i) for i, d in deadlines.items())]
    assert drain(queue) == expected


def test_remove_unknown_id(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    queue.push(make(impl, 1))
    queue.schedule(make(impl, 2), 5.0)
    assert queue.remove(impl.TaskId("nope")) is None
    assert len(queue) == 2


def test_tasks_snapshot(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    a, b = make(impl, "a"), make(impl, "b")
    queue.push(a)
    queue.push(b)
    late, early, tie = make(impl, "late"), make(impl, "early"), make(impl, "tie")
    queue.schedule(late, 9.0)
    queue.schedule(early, 1.0)
    queue.schedule(tie, 9.0)
    snapshot = queue.tasks()
    assert isinstance(snapshot, list)
    assert [t.args for t in snapshot] == ["a", "b", "early", "late", "tie"]
    assert snapshot[0] is a  # the tasks themselves, not copies
    # A snapshot: later changes do not show in it, and it does not drain the queue.
    queue.pop()
    queue.push(make(impl, "c"))
    assert [t.args for t in snapshot] == ["a", "b", "early", "late", "tie"]
    assert len(queue) == 5
    assert [t.args for t in queue.tasks()] == ["b", "c", "early", "late", "tie"]


def test_len_bool_and_totals(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    assert len(queue) == 0 and not queue
    queue.push(make(impl, 1))
    queue.schedule(make(impl, 2), 1.0)
    queue.push_args(3)
    queue.push_args_bulk([4, 5])
    assert len(queue) == 5 and bool(queue)
    assert queue.ready_count == 4
    assert queue.scheduled_count == 1
    assert queue.pushed_total == 5
    assert queue.popped_total == 0
    queue.pop()
    queue.pop()
    assert queue.popped_total == 2
    assert len(queue) == 3
    clock.now = 1.0
    drain(queue)
    assert queue.popped_total == 5
    assert queue.pushed_total == 5
    assert len(queue) == 0 and not queue


# -- threads ------------------------------------------------------------------------


def test_threads_push_while_one_pops_none_lost(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    threads, per_thread = 4, 5_000
    barrier = threading.Barrier(threads + 1)

    def produce(n: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            assert queue.push_args((n, i)) is not None

    workers = [threading.Thread(target=produce, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    barrier.wait()
    got: list[tuple[int, int]] = []
    total = threads * per_thread
    while len(got) < total:
        task = queue.pop()
        if task is not None:
            got.append(task.args)
        elif not any(thread.is_alive() for thread in workers) and not queue:
            break
        else:
            time.sleep(0)  # empty: hand the GIL to the producers instead of spinning
    for thread in workers:
        thread.join()
    got.extend(drain(queue))
    assert len(got) == total
    assert sorted(got) == [(n, i) for n in range(threads) for i in range(per_thread)]
    # Each producer's tasks come out in the order it pushed them.
    for n in range(threads):
        assert [i for m, i in got if m == n] == list(range(per_thread))
    assert queue.pushed_total == total
    assert queue.popped_total == total


# -- compiled only -------------------------------------------------------------------


@pytest.mark.skipif(NO_EXTENSIONS, reason="the compiled core is disabled")
def test_compiled_queue_million_items() -> None:
    from pyapalis._core import TaskQueue

    queue = TaskQueue(FakeClock())
    n = 1_000_000
    ids = queue.push_args_bulk(range(n))
    assert len(ids) == n
    assert len(queue) == n
    pop = queue.pop
    expected = 0
    while (task := pop()) is not None:
        if task.args != expected:
            pytest.fail(f"item {expected} came out as {task.args}")
        expected += 1
    assert expected == n
    assert len(queue) == 0
    assert queue.popped_total == n
    # The ring shrank back and still works.
    queue.push_args("again")
    assert queue.pop().args == "again"


@pytest.mark.skipif(NO_EXTENSIONS, reason="the compiled core is disabled")
def test_compiled_queue_untracks_queued_tasks_and_retracks_them() -> None:
    from pyapalis._core import Task, TaskQueue

    clock = FakeClock()
    queue = TaskQueue(clock)
    ready, scheduled = Task("r"), Task("s")
    assert gc.is_tracked(ready) and gc.is_tracked(ready.parts)
    queue.push(ready)
    queue.schedule(scheduled, 1.0)
    # Queued tasks are off the GC's lists (a backlog costs the collector nothing)...
    assert not gc.is_tracked(ready)
    assert not gc.is_tracked(scheduled)
    gc.collect()
    # ...and back on them once handed out, through every path out of the queue.
    assert queue.pop() is ready
    assert gc.is_tracked(ready) and gc.is_tracked(ready.parts)
    clock.now = 1.0
    assert queue.pop() is scheduled
    assert gc.is_tracked(scheduled) and gc.is_tracked(scheduled.parts)
    queue.push(ready)
    ready.parts.task_id = "x"
    assert queue.remove(ready.parts.task_id) is ready
    assert gc.is_tracked(ready)
    assert queue.tasks() == []


@pytest.mark.skipif(NO_EXTENSIONS, reason="the compiled core is disabled")
def test_compiled_queue_owns_one_reference_per_queued_task() -> None:
    from pyapalis._core import Task, TaskQueue

    clock = FakeClock()
    queue = TaskQueue(clock)
    ready, scheduled, front = Task("r"), Task("s"), Task("f")
    base = [sys.getrefcount(ready), sys.getrefcount(scheduled), sys.getrefcount(front)]
    queue.push(ready)
    queue.schedule(scheduled, 5.0)
    queue.push_front(front)
    after = [sys.getrefcount(ready), sys.getrefcount(scheduled), sys.getrefcount(front)]
    assert after == [b + 1 for b in base]
    # Handed out: the reference moves to the caller, none leaks or goes missing.
    assert queue.pop() is front
    assert sys.getrefcount(front) == base[2]
    # Dropping the queue releases what it still holds (ring and heap).
    del queue
    assert [sys.getrefcount(ready), sys.getrefcount(scheduled)] == base[:2]
    assert gc.is_tracked(ready) and gc.is_tracked(scheduled)


# -- push_nowait and the hand-off to a parked consumer --------------------------------


class Owner:
    """Stands in for MemoryStorage: counts the wakes the queue leaves to it."""

    def __init__(self) -> None:
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


class Full(Exception):
    pass


@dataclass
class Consumers:
    queue: Any
    waiters: Any
    pending: list[Any]
    owner: Owner
    resumed: list[tuple[Any, Any]]


def connected(impl: Impl, clock: FakeClock, maxsize: int = 0, *, parked: int = 1) -> Consumers:
    """A queue connected as MemoryStorage connects it, ``parked`` consumers waiting."""
    from collections import deque

    queue = impl.TaskQueue(clock, maxsize)
    waiters: deque[str] = deque(f"consumer-{i}" for i in range(parked))
    pending: list[Any] = []
    owner = Owner()
    resumed: list[tuple[Any, Any]] = []
    queue.connect_consumers(
        waiters,
        pending,
        lambda waiter, value: resumed.append((waiter, value)),
        owner,
        Full,
        "queue is full",
    )
    queue.consumer_thread = threading.get_ident()
    queue.consumer_waiting = parked > 0
    return Consumers(queue, waiters, pending, owner, resumed)


def test_push_nowait_queues_like_push_args_while_nobody_waits(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    first = queue.push_nowait("a")
    second = queue.push_nowait("b")
    assert isinstance(first, impl.TaskId) and first.is_ulid and first < second
    assert [task.parts.task_id for task in queue.tasks()] == [first, second]
    assert drain(queue) == ["a", "b"]


def test_push_nowait_on_a_full_queue_raises_and_queues_nothing(
    impl: Impl, clock: FakeClock
) -> None:
    queue = impl.TaskQueue(clock, 1)
    queue.push_nowait("a")
    with pytest.raises(IndexError, match="TaskQueue is full"):
        queue.push_nowait("b")
    consumers = connected(impl, clock, 1, parked=0)
    consumers.queue.push_nowait("a")
    with pytest.raises(Full, match="queue is full"):
        consumers.queue.push_nowait("b")
    assert len(consumers.queue) == 1 and consumers.queue.pushed_total == 1


def test_a_push_hands_its_task_to_the_oldest_parked_consumer(impl: Impl, clock: FakeClock) -> None:
    consumers = connected(impl, clock, parked=2)
    task_id = consumers.queue.push_nowait("job")
    [(waiter, value)] = consumers.resumed
    assert waiter == "consumer-0"
    assert list(consumers.waiters) == ["consumer-1"]
    assert type(value) is impl.OneShotValue
    task = value.unwrap()
    assert task.args == "job" and task.parts.task_id == task_id
    assert len(consumers.queue) == 0 and consumers.queue.popped_total == 1
    assert consumers.queue.consumer_waiting  # one consumer is still parked
    consumers.queue.push_nowait("next")
    assert [w for w, _ in consumers.resumed] == ["consumer-0", "consumer-1"]
    assert not consumers.queue.consumer_waiting
    assert consumers.owner.wakes == 0


@pytest.mark.parametrize(
    "situation", ["another thread", "pending conversions", "a scheduled task", "older tasks"]
)
def test_a_push_the_hand_off_does_not_cover_asks_the_owner_to_wake(
    impl: Impl, clock: FakeClock, situation: str
) -> None:
    consumers = connected(impl, clock)
    queue = consumers.queue
    if situation == "another thread":
        queue.consumer_thread = 0
    elif situation == "pending conversions":
        consumers.pending.append("a task to convert")
    elif situation == "a scheduled task":
        queue.schedule(make(impl, "later"), 10.0)
    else:
        queue.push(make(impl, "older"))
    queue.push_nowait("new")
    assert consumers.resumed == []
    assert consumers.owner.wakes == 1
    assert list(consumers.waiters) == ["consumer-0"] and queue.consumer_waiting
    assert "new" in [task.args for task in queue.tasks()]


def test_a_push_from_another_thread_shares_a_pending_wake(impl: Impl, clock: FakeClock) -> None:
    consumers = connected(impl, clock)
    queue = consumers.queue
    queue.consumer_thread = 0  # the consumers live on another thread
    queue.wake_pending = True
    queue.push_nowait("a")
    queue.push_nowait("b")
    assert consumers.owner.wakes == 0  # the wake on its way covers them
    queue.wake_pending = False  # the consumers' thread ran it
    queue.push_nowait("c")
    assert consumers.owner.wakes == 1
    assert drain(queue) == ["a", "b", "c"]


def test_a_pending_wake_does_not_hold_back_a_push_on_the_consumers_thread(
    impl: Impl, clock: FakeClock
) -> None:
    consumers = connected(impl, clock)
    consumers.queue.wake_pending = True
    consumers.queue.push_nowait("now")
    [(waiter, value)] = consumers.resumed
    assert waiter == "consumer-0" and value.unwrap().args == "now"
    consumers.queue.consumer_waiting = True
    consumers.queue.schedule(make(impl, "later"), 10.0)
    consumers.queue.push_nowait("next")  # not a hand-off: the owner wakes
    assert consumers.owner.wakes == 1


def test_no_wake_at_all_while_no_consumer_waits(impl: Impl, clock: FakeClock) -> None:
    consumers = connected(impl, clock, parked=0)
    consumers.queue.push_nowait("a")
    assert consumers.resumed == [] and consumers.owner.wakes == 0
    assert drain(consumers.queue) == ["a"]


def test_a_failed_hand_off_leaves_the_task_and_the_consumer_in_place(
    impl: Impl, clock: FakeClock
) -> None:
    from collections import deque

    queue = impl.TaskQueue(clock)
    waiters: deque[str] = deque(["consumer"])

    def reschedule(_waiter: object, _value: object) -> None:
        raise RuntimeError("must be called from async context")

    queue.connect_consumers(waiters, (), reschedule, Owner(), Full, "full")
    queue.consumer_thread = threading.get_ident()
    queue.consumer_waiting = True
    with pytest.raises(RuntimeError, match="async context"):
        queue.push_nowait("kept")
    assert list(waiters) == ["consumer"] and queue.consumer_waiting
    assert queue.popped_total == 0
    assert drain(queue) == ["kept"]


def test_the_owner_is_held_weakly(impl: Impl, clock: FakeClock) -> None:
    consumers = connected(impl, clock)
    queue = consumers.queue
    queue.consumer_thread = 0  # every push would ask the owner to wake
    owner_ref = __import__("weakref").ref(consumers.owner)
    del consumers
    gc.collect()
    assert owner_ref() is None
    queue.push_nowait("a")  # an owner gone: nobody to wake, the task stays queued
    assert drain(queue) == ["a"]


def test_connect_consumers_checks_its_arguments(impl: Impl, clock: FakeClock) -> None:
    queue = impl.TaskQueue(clock)
    with pytest.raises(TypeError, match="reschedule must be callable"):
        queue.connect_consumers([], (), None, Owner(), Full, "full")
    with pytest.raises(TypeError):
        queue.connect_consumers([], (), print, Owner(), Full, None)


# -- OneShotValue ------------------------------------------------------------------


def test_a_one_shot_value_unwraps_once(impl: Impl) -> None:
    value = impl.OneShotValue("payload")
    assert value.value == "payload"
    assert repr(value) == "OneShotValue('payload')"
    assert value.unwrap() == "payload"
    with pytest.raises(RuntimeError, match="already used"):
        value.unwrap()
    assert value.value == "payload"


def test_a_one_shot_value_sends_into_generators_once(impl: Impl) -> None:
    import trio

    def echo() -> Any:
        received = yield "ready"
        yield f"got {received}"

    gen = echo()
    next(gen)
    value = impl.OneShotValue(7)
    assert value.send(gen) == "got 7"
    with pytest.raises(RuntimeError, match="already used"):
        value.send(gen)

    async def aecho() -> Any:
        received = yield "ready"
        yield f"got {received}"

    async def main() -> None:
        agen = aecho()
        try:
            await agen.asend(None)
            value = impl.OneShotValue(8)
            assert await value.asend(agen) == "got 8"
            with pytest.raises(RuntimeError, match="already used"):
                await value.asend(agen)
        finally:
            await agen.aclose()

    trio.run(main)


def test_memory_storage_resumes_consumers_with_a_registered_outcome() -> None:
    import outcome

    from pyapalis._implementation import OneShotValue
    from pyapalis.backends._memory._storage import MemoryStorage  # registers the class

    assert MemoryStorage is not None
    assert isinstance(OneShotValue(1), outcome.Outcome)
