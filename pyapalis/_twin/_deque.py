"""The pure-Python twin of the compiled ``TaskQueue`` (``csrc/_deque.pxi``).

Ready tasks in FIFO order plus scheduled tasks ordered by deadline; waiting is
the trio layer's business. A lock makes every operation atomic so producers on
other threads may push while the trio thread pops (the compiled queue gets the
same guarantee from the GIL).
"""

from __future__ import annotations

import heapq
import math
import threading
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Sized
from typing import Any, Generic, Protocol, TypeVar, final

from ._task import Task
from ._ulid import TaskId

__all__ = ["OneShotValue", "TaskQueue", "Waker"]

T = TypeVar("T")
R = TypeVar("R")


class Waker(Protocol):
    """The owner a :class:`TaskQueue` calls when a push must wake a parked consumer."""

    def wake(self) -> None:
        """Get a parked consumer going (called on any thread; see ``connect_consumers``)."""


# A pop checks the clock for due scheduled tasks at least this often.
_RELEASE_EVERY = 64


@final
class OneShotValue(Generic[T]):
    """A value that resumes a parked task once: an ``outcome.Outcome`` for one use.

    The trio layer registers this class as a virtual ``outcome.Outcome`` and
    hands a task to a parked consumer with ``reschedule(consumer,
    OneShotValue(task))``. It does what ``outcome.Value`` does (``unwrap``,
    ``send``, ``asend``, each allowed once) for a fraction of the cost: the
    push-to-handler path creates and unwraps one per wake-up.
    """

    __slots__ = ("_used", "_value")

    def __init__(self, value: T) -> None:
        self._value = value
        self._used = False

    def _take(self) -> T:
        if self._used:
            raise RuntimeError("OneShotValue: this value was already used")
        self._used = True
        return self._value

    @property
    def value(self) -> T:
        """The held value."""
        return self._value

    def unwrap(self) -> T:
        """Return the value (once)."""
        return self._take()

    def send(self, gen: Generator[R, T, object]) -> R:
        """Send the value into generator ``gen`` (once)."""
        return gen.send(self._take())

    async def asend(self, agen: AsyncGenerator[R, T]) -> R:
        """Send the value into async generator ``agen`` (once)."""
        return await agen.asend(self._take())

    def __repr__(self) -> str:
        return f"OneShotValue({self._value!r})"


@final
class TaskQueue:
    """Ready tasks in FIFO order plus scheduled tasks ordered by deadline.

    ``clock()`` returns the current time on the deadline's scale (the trio layer
    passes ``trio.current_time``). Scheduled tasks move to the back of the ready
    queue once due; a pop checks for due tasks when the ready queue is empty and
    every few dozen pops otherwise.
    """

    __slots__ = (
        "_clock",
        "_full_error",
        "_full_message",
        "_heap",
        "_lock",
        "_owner",
        "_pending",
        "_ready",
        "_reschedule",
        "_seq",
        "_since_release",
        "_waiters",
        "consumer_thread",
        "consumer_waiting",
        "maxsize",
        "popped_total",
        "pushed_total",
        "wake_pending",
    )

    def __init__(self, clock: Callable[[], float], maxsize: int = 0) -> None:
        if not callable(clock):
            raise TypeError(f"TaskQueue: clock must be callable, got {type(clock).__name__}")
        if maxsize < 0:
            raise ValueError(f"TaskQueue: maxsize must be >= 0, got {maxsize}")
        self._clock = clock
        self.maxsize = maxsize
        self._ready: deque[Task] = deque()
        self._heap: list[tuple[float, int, Task]] = []
        self._seq = 0
        self._since_release = 0
        self._lock = threading.Lock()
        self.pushed_total = 0
        self.popped_total = 0
        # The hand-off to parked consumers (see connect_consumers).
        self._waiters: deque[Any] | None = None
        self._pending: Sized = ()
        self._reschedule: Callable[[Any, Any], object] | None = None
        self._owner: weakref.ref[Waker] | None = None
        self._full_error: Callable[[str], BaseException] = IndexError
        self._full_message = "TaskQueue is full"
        self.consumer_thread = 0
        """The thread whose consumers park on this queue (0: none yet)."""
        self.consumer_waiting = False
        """Set while a consumer parks or is about to: a push must wake one."""
        self.wake_pending = False
        """Set while a wake sent to ``consumer_thread`` has not run yet."""

    def _full(self) -> bool:
        return self.maxsize > 0 and len(self._ready) + len(self._heap) >= self.maxsize

    def is_full(self) -> bool:
        """True when ``maxsize`` is set and reached."""
        return self._full()

    def push(self, task: Task, force: bool = False) -> bool:
        """Append a ready task at the back; False (nothing queued) if full."""
        _check_task(task, "push")
        with self._lock:
            if self._full() and not force:
                return False
            self._ready.append(task)
            self.pushed_total += 1
            return True

    def push_front(self, task: Task) -> None:
        """Put a task back at the front (a task handed back unfinished)."""
        _check_task(task, "push_front")
        with self._lock:
            self._ready.appendleft(task)

    def schedule(self, task: Task, deadline: float, force: bool = False) -> bool:
        """Hold ``task`` until ``clock() >= deadline``; False (nothing queued) if full."""
        _check_task(task, "schedule")
        if math.isnan(deadline):
            raise ValueError("schedule: deadline must not be NaN")
        with self._lock:
            if self._full() and not force:
                return False
            heapq.heappush(self._heap, (float(deadline), self._seq, task))
            self._seq += 1
            self.pushed_total += 1
            return True

    def push_args(self, args: Any) -> TaskId | None:
        """Wrap ``args`` in a new task with a generated id and append it.

        Returns the id, or None (nothing queued) if the queue is full.
        """
        task = Task(args)
        task_id = TaskId.generate()
        task.parts.task_id = task_id
        return task_id if self.push(task) else None

    def connect_consumers(
        self,
        waiters: deque[Any],
        pending: Sized,
        reschedule: Callable[[Any, Any], object],
        owner: Waker,
        full_error: Callable[[str], BaseException],
        full_message: str,
    ) -> None:
        """Let :meth:`push_nowait` give a new task straight to a parked consumer.

        ``waiters`` is the owner's deque of parked consumers, oldest first.
        When ``consumer_waiting`` is set, a push made on ``consumer_thread``
        that finds its task alone in the queue (nothing scheduled, ``pending``
        empty) pops the oldest waiter and calls ``reschedule(waiter,
        OneShotValue(task))``; any other push with ``consumer_waiting`` set
        calls ``owner.wake()`` (the owner is a ``Waker``), unless it comes from another thread while
        ``wake_pending`` is set (the owner sets it when it sends a wake to
        ``consumer_thread``, and clears it there before it looks at the
        queue). ``owner`` is held weakly. A full queue makes
        :meth:`push_nowait` raise ``full_error(full_message)``.
        """
        if not callable(reschedule):
            raise TypeError("connect_consumers: reschedule must be callable")
        if not isinstance(full_message, str):
            raise TypeError("connect_consumers: full_message must be a str")
        self._waiters = waiters
        self._pending = pending
        self._reschedule = reschedule
        self._owner = weakref.ref(owner)
        self._full_error = full_error
        self._full_message = full_message

    def push_nowait(self, args: Any) -> TaskId:
        """``push_args``, then wake a parked consumer; raises when full.

        The twin of the compiled queue's path that needs no Python frame
        but the wake itself (see :meth:`connect_consumers`).
        """
        task_id = TaskId.generate()
        self.push_new_nowait(args, task_id)
        return task_id

    def push_new_nowait(self, args: Any, task_id: TaskId) -> None:
        """:meth:`push_nowait` under ``task_id``, a fresh id the caller generated.

        The caller can file the id (say, with a future waiting for the task's
        outcome) before the task exists. Nothing checks that the id is new.
        """
        if not isinstance(task_id, TaskId):
            raise TypeError(f"push_new_nowait: task_id must be a TaskId, got {task_id!r}")
        task = Task(args)
        task.parts.task_id = task_id
        if not self.push(task):
            raise self._full_error(self._full_message)
        if self.consumer_waiting:
            self._wake_consumer()

    def _wake_consumer(self) -> None:
        waiters = self._waiters
        reschedule = self._reschedule
        if (
            waiters
            and reschedule is not None
            and self.consumer_thread == threading.get_ident()
            and not self._pending
        ):
            with self._lock:
                alone = len(self._ready) == 1 and not self._heap
                task = self._ready.popleft() if alone else None
                if task is not None:
                    self.popped_total += 1
            if task is not None:
                waiter = waiters.popleft()
                self.consumer_waiting = bool(waiters)
                try:
                    reschedule(waiter, OneShotValue(task))
                except BaseException:
                    # Nobody took it: put both back as they were.
                    self.push_front(task)
                    self.popped_total -= 1
                    waiters.appendleft(waiter)
                    self.consumer_waiting = True
                    raise
                return
        if self.wake_pending and self.consumer_thread != threading.get_ident():
            return  # a wake is on its way to the consumers' thread: it covers this push
        owner = None if self._owner is None else self._owner()
        if owner is not None:
            owner.wake()

    def push_args_bulk(self, iterable: Iterable[Any]) -> list[TaskId]:
        """``push_args`` for every item, ignoring ``maxsize``; returns the ids in order."""
        ids = []
        for args in iterable:
            task = Task(args)
            task_id = TaskId.generate()
            task.parts.task_id = task_id
            ids.append(task_id)
            self.push(task, force=True)
        return ids

    def pop(self) -> Task | None:
        """The next ready task, or None. Due scheduled tasks are released first."""
        if self._heap:
            self._since_release += 1
            if not self._ready or self._since_release >= _RELEASE_EVERY:
                self.release_due(self._clock())
        with self._lock:
            if not self._ready:
                return None
            self.popped_total += 1
            return self._ready.popleft()

    def release_due(self, now: float) -> int:
        """Release scheduled tasks due at ``now``; returns how many moved."""
        moved = 0
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                self._ready.append(heapq.heappop(self._heap)[2])
                moved += 1
            self._since_release = 0
        return moved

    def next_deadline(self) -> float:
        """The earliest scheduled deadline, or ``inf`` when nothing is scheduled."""
        with self._lock:
            return self._heap[0][0] if self._heap else math.inf

    def remove(self, task_id: TaskId) -> Task | None:
        """Take the queued task with this id out of the queue; None if absent."""
        with self._lock:
            for task in self._ready:
                if task.parts.task_id == task_id:
                    self._ready.remove(task)
                    return task
            for index, entry in enumerate(self._heap):
                if entry[2].parts.task_id == task_id:
                    self._heap.pop(index)
                    heapq.heapify(self._heap)
                    return entry[2]
        return None

    def tasks(self) -> list[Task]:
        """A snapshot list: ready tasks in order, then scheduled ones by deadline."""
        with self._lock:
            return list(self._ready) + [entry[2] for entry in sorted(self._heap)]

    @property
    def ready_count(self) -> int:
        """Tasks that can be handed out now."""
        return len(self._ready)

    @property
    def scheduled_count(self) -> int:
        """Tasks waiting for their deadline."""
        return len(self._heap)

    def __len__(self) -> int:
        return len(self._ready) + len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._ready) or bool(self._heap)


def _check_task(task: object, method: str) -> None:
    if not isinstance(task, Task):
        raise TypeError(f"TaskQueue.{method}: expected Task, got {type(task).__name__}")
