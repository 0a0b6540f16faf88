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
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, final

from ._pycore import Task, TaskId

__all__ = ["TaskQueue"]

# A pop checks the clock for due scheduled tasks at least this often.
_RELEASE_EVERY = 64


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
        "_heap",
        "_lock",
        "_ready",
        "_seq",
        "_since_release",
        "maxsize",
        "popped_total",
        "pushed_total",
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
