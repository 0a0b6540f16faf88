"""Scale: does a big backlog, or a big schedule, slow the queue down?

* ``Backlog``: a worker drains ``BATCH`` tasks from the front of a storage
  that holds ``backlog`` more behind them (1k to 10M). The target: the time
  with a 10M backlog within 20% of the time with 10k. The oldest tasks are the
  coldest in the CPU caches, and a backlog must not make the cyclic GC rescan
  it (queued tasks are untracked), so this is what a long queue costs.
* ``BacklogRatio``: the same comparison made robust to a noisy machine: in
  one process, batches are drained alternately from a 10M and a 10k backlog,
  and the ratio of the median times is tracked (1.0 = no slowdown; the target
  is at most 1.2).
* ``ScheduleHeap``: the schedule of future tasks (a binary heap) holding
  ``scheduled`` tasks (1k to 1M); ``BATCH`` more are scheduled, or ``BATCH``
  due ones released. O(log n): from 1k to 1M the cost per operation should
  about double (log2 10^6 / log2 10^3), not grow a thousandfold.
* ``ReadyBesideSchedule``: a worker drains ``BATCH`` ready tasks while
  ``scheduled`` tasks wait 30 years out: a schedule must not tax the ready path.

Every suite runs on the compiled core and the pure-Python twin; the twin skips
the 10M backlog (its tasks are several times larger and slower to build).
Fixtures are built in ``setup()``, which asv runs before every timed call
(``number = 1``); a 10M backlog takes seconds and a few GB to build.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any, ClassVar

import trio

from ._support import IMPLEMENTATIONS, load_pyapalis
from .peers.pyapalis_worker import drain

#: Tasks per timed call; per-task cost = reported time / BATCH.
BATCH = 10_000

#: The pure-Python twin stops here (larger backlogs skip its row).
PYTHON_MAX = 1_000_000

#: How far out the tasks of ReadyBesideSchedule wait: past any trio clock.
THIRTY_YEARS = 30 * 365 * 24 * 3600.0


def _skip_large_python(implementation: str, size: int) -> None:
    if implementation == "python" and size > PYTHON_MAX:
        raise NotImplementedError(f"the pure-Python twin stops at {PYTHON_MAX:,} tasks")


class Backlog:
    """Drain BATCH tasks with ``backlog`` tasks queued behind them (concurrency 1)."""

    params: ClassVar[list[list[Any]]] = [
        IMPLEMENTATIONS,
        [1_000, 10_000, 100_000, 1_000_000, 10_000_000],
    ]
    param_names: ClassVar[list[str]] = ["implementation", "backlog"]
    number = 1
    repeat = (3, 5, 60.0)
    warmup_time = 0.0
    timeout = 1800.0

    def setup(self, implementation: str, backlog: int) -> None:
        _skip_large_python(implementation, backlog)
        pyapalis = load_pyapalis(implementation)
        self.storage = pyapalis.MemoryStorage()
        # push_bulk is the fastest way in; the list of ids it returns is dropped.
        trio.run(self.storage.push_bulk, range(BATCH + backlog))

    def teardown(self, implementation: str, backlog: int) -> None:
        # Free a 10M backlog before asv measures the next repeat.
        self.storage = None

    def time_drain_batch(self, implementation: str, backlog: int) -> None:
        """BATCH (10,000) tasks from the front: worker start to the last completion."""
        trio.run(drain, self.storage, BATCH, 1)

    def peakmem_backlog(self, implementation: str, backlog: int) -> None:
        """Peak RSS with the backlog queued, after draining BATCH (interpreter included)."""
        trio.run(drain, self.storage, BATCH, 1)


#: The backlogs BacklogRatio compares, and how many batches it drains from each.
LARGE_BACKLOG = 10_000_000
SMALL_BACKLOG = 10_000
RATIO_ROUNDS = 30


class BacklogRatio:
    """Time per task with a 10M backlog over time per task with 10k, interleaved.

    Separate asv runs of ``Backlog`` are minutes apart, and on a shared
    machine the speed drifts by tens of percent over minutes. Here each round
    drains one BATCH from the large backlog, then one from the small (refilled
    after each batch, so BATCH plus 10k are queued every time) in the same
    process; the ratio of the two medians cancels the drift.
    """

    params: ClassVar[list[list[str]]] = [IMPLEMENTATIONS]
    param_names: ClassVar[list[str]] = ["implementation"]
    number = 1
    repeat = 1
    timeout = 1800.0

    def setup(self, implementation: str) -> None:
        _skip_large_python(implementation, LARGE_BACKLOG)
        pyapalis = load_pyapalis(implementation)
        self.large = pyapalis.MemoryStorage()
        trio.run(self.large.push_bulk, range(LARGE_BACKLOG + RATIO_ROUNDS * BATCH))
        self.small = pyapalis.MemoryStorage()
        trio.run(self.small.push_bulk, range(SMALL_BACKLOG + BATCH))

    def teardown(self, implementation: str) -> None:
        self.large = self.small = None

    def track_large_over_small(self, implementation: str) -> float:
        """Median time per task, 10M backlog / 10k backlog (target: <= 1.2)."""
        return trio.run(self._ratio)

    track_large_over_small.unit = "ratio"  # type: ignore[attr-defined]

    async def _ratio(self) -> float:
        large, small = [], []
        for _ in range(RATIO_ROUNDS):
            large.append(await _timed_drain(self.large, BATCH))
            small.append(await _timed_drain(self.small, BATCH))
            await self.small.push_bulk(range(BATCH))
        return statistics.median(large) / statistics.median(small)


async def _timed_drain(storage: Any, n: int) -> float:
    start = time.perf_counter()
    await drain(storage, n, 1)
    return time.perf_counter() - start


class ScheduleHeap:
    """The schedule of future tasks, at the queue level (no trio)."""

    params: ClassVar[list[list[Any]]] = [IMPLEMENTATIONS, [1_000, 10_000, 100_000, 1_000_000]]
    param_names: ClassVar[list[str]] = ["implementation", "scheduled"]
    number = 1
    repeat = (5, 20, 30.0)
    warmup_time = 0.0
    timeout = 600.0

    def setup(self, implementation: str, scheduled: int) -> None:
        pyapalis = load_pyapalis(implementation)
        implementation_module = pyapalis._implementation
        task_cls = implementation_module.Task
        self.now = 0.0
        self.queue = implementation_module.TaskQueue(lambda: self.now)
        shuffled = random.Random(scheduled)
        schedule = self.queue.schedule
        # Waiting tasks, due between t=1000 and t=2000 in random order.
        for _ in range(scheduled):
            schedule(task_cls(None), 1000.0 + 1000.0 * shuffled.random())
        # BATCH tasks to add in time_schedule, at random places in the heap.
        self.new = [(task_cls(None), 1000.0 + 1000.0 * shuffled.random()) for _ in range(BATCH)]
        # BATCH tasks due at t=1, ahead of all the others, for time_release_due.
        self.due_tasks = [task_cls(None) for _ in range(BATCH)]

    def time_schedule(self, implementation: str, scheduled: int) -> None:
        """BATCH ``schedule(task, deadline)`` into a heap of ``scheduled`` tasks."""
        schedule = self.queue.schedule
        for task, deadline in self.new:
            schedule(task, deadline)

    def time_release_due(self, implementation: str, scheduled: int) -> None:
        """Schedule BATCH tasks due first, let them fall due, pop them all.

        Each task goes through one heap push and one heap pop (O(log n) each)
        and one pass through the ready ring.
        """
        queue = self.queue
        schedule = queue.schedule
        for index, task in enumerate(self.due_tasks):
            schedule(task, index / BATCH)
        self.now = 1.0
        pop = queue.pop
        for _ in self.due_tasks:
            pop()


class ReadyBesideSchedule:
    """Drain BATCH ready tasks while ``scheduled`` tasks wait 30 years out."""

    params: ClassVar[list[list[Any]]] = [IMPLEMENTATIONS, [0, 1_000, 100_000, 1_000_000]]
    param_names: ClassVar[list[str]] = ["implementation", "scheduled"]
    number = 1
    repeat = (3, 10, 30.0)
    warmup_time = 0.0
    timeout = 600.0

    def setup(self, implementation: str, scheduled: int) -> None:
        pyapalis = load_pyapalis(implementation)
        self.storage = pyapalis.MemoryStorage()
        later = time.time() + THIRTY_YEARS
        builder = pyapalis.TaskBuilder
        tasks = [builder(None).run_at_timestamp(later).build() for _ in range(scheduled)]
        trio.run(self._push_all, tasks)
        push = self.storage.push_nowait
        for i in range(BATCH):
            push(i)
        assert self.storage.statistics().scheduled == scheduled

    async def _push_all(self, tasks: list[Any]) -> None:
        push_task = self.storage.push_task
        for task in tasks:
            await push_task(task)

    def time_drain_ready(self, implementation: str, scheduled: int) -> None:
        """BATCH ready tasks through a worker (it checks the schedule every 64 pops)."""
        trio.run(drain, self.storage, BATCH, 1)
