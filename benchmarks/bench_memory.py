"""MemoryStorage: push, push_bulk, pops, and the memory a queued task holds.

Every suite runs on both implementations (``cython``: the compiled core that
ships; ``python``: the pure-Python twin), selected at import through
``benchmarks._support.load_pyapalis``.

A timed call does a batch of ``BATCH`` operations, so the per-operation cost is
the reported time divided by ``BATCH``. The suites that change the storage set
``number = 1``: asv then runs ``setup()`` before every timed call, and each
call starts from the same fixture (an empty storage, or one holding ``BATCH``
tasks). The async methods run in one ``trio.run`` per call; its fixed cost
(a few hundred microseconds here) is part of the figure and is measured on its
own by ``time_trio_run_overhead``.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from typing import Any, ClassVar

import trio

from ._support import IMPLEMENTATIONS, load_pyapalis

#: Operations per timed call; per-operation cost = reported time / BATCH.
BATCH = 10_000

#: Tasks queued for the memory figures (the target is stated per queued task).
MEMORY_TASKS = 1_000_000

#: Tasks queued when tracing allocations (tracemalloc is slow and keeps a
#: record per block: 100k tasks give a stable per-task figure quickly).
TRACED_TASKS = 100_000


class _StorageSuite:
    params: ClassVar[list[list[str]]] = [IMPLEMENTATIONS]
    param_names: ClassVar[list[str]] = ["implementation"]
    number = 1
    repeat = (5, 50, 20.0)
    warmup_time = 0.0

    pyapalis: Any
    storage: Any

    def setup(self, implementation: str) -> None:
        self.pyapalis = load_pyapalis(implementation)
        self.storage = self.pyapalis.MemoryStorage()
        self.items = list(range(BATCH))


class StoragePush(_StorageSuite):
    """Queueing ``BATCH`` new tasks into an empty storage (each gets a ULID id)."""

    def setup(self, implementation: str) -> None:
        super().setup(implementation)
        self.tasks = [self.pyapalis.Task(item) for item in self.items]

    def time_push_nowait(self, implementation: str) -> None:
        """BATCH ``push_nowait(i)``: the synchronous, any-thread push."""
        push = self.storage.push_nowait
        for item in self.items:
            push(item)

    def time_push(self, implementation: str) -> None:
        """BATCH ``await push(i)`` in one trio run (each push is a checkpoint)."""
        trio.run(self._push_all)

    async def _push_all(self) -> None:
        push = self.storage.push
        for item in self.items:
            await push(item)

    def time_push_bulk(self, implementation: str) -> None:
        """One ``await push_bulk(items)`` of BATCH items, in one trio run."""
        trio.run(self.storage.push_bulk, self.items)

    def time_push_task(self, implementation: str) -> None:
        """BATCH ``await push_task(task)`` of prepared tasks (ids kept), in one trio run."""
        trio.run(self._push_tasks)

    async def _push_tasks(self) -> None:
        push_task = self.storage.push_task
        for task in self.tasks:
            await push_task(task)

    def time_trio_run_overhead(self, implementation: str) -> None:
        """An empty ``trio.run``: the fixed cost inside the async figures above."""
        trio.run(trio.lowlevel.checkpoint)


class StoragePop(_StorageSuite):
    """Taking ``BATCH`` tasks out of a storage that holds them (pushed in ``setup()``)."""

    def setup(self, implementation: str) -> None:
        super().setup(implementation)
        push = self.storage.push_nowait
        for item in self.items:
            push(item)

    def time_take_nowait(self, implementation: str) -> None:
        """BATCH ``take_nowait()``: the worker's pop (a bound compiled method)."""
        take = self.storage.take_nowait
        for _ in self.items:
            take()

    def time_take(self, implementation: str) -> None:
        """BATCH ``await take()`` in one trio run (each take is a checkpoint)."""
        trio.run(self._take_all)

    async def _take_all(self) -> None:
        take = self.storage.take
        for _ in self.items:
            await take()


def _queue_many(pyapalis: Any, count: int, args: object) -> Any:
    storage = pyapalis.MemoryStorage()
    push = storage.push_nowait
    for _ in range(count):
        push(args)
    return storage


class _QueuedTaskSuite:
    """Memory a queued task holds in a MemoryStorage, args excluded.

    Every task shares one args object, so the figures are what pyapalis adds:
    the Task, its Parts and Attempt, its generated TaskId and its slot in the
    queue. Target: at most 256 bytes per queued task.
    """

    params: ClassVar[list[list[str]]] = [IMPLEMENTATIONS]
    param_names: ClassVar[list[str]] = ["implementation"]
    timeout = 600.0
    number = 1
    repeat = 1

    def setup(self, implementation: str) -> None:
        self.pyapalis = load_pyapalis(implementation)
        # Warm the freelists and the first pools so the figure is the steady state.
        warm = _queue_many(self.pyapalis, 10_000, None)
        del warm
        gc.collect()


class QueuedTaskMemory(_QueuedTaskSuite):
    """What a queued task asks of the allocators (tracemalloc), and the peak it makes."""

    def track_traced_bytes_per_queued_task(self, implementation: str) -> float:
        """tracemalloc bytes per task for 100k ``push_nowait`` (what was asked of the allocator)."""
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            storage = _queue_many(self.pyapalis, TRACED_TASKS, None)
            traced = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(storage) == TRACED_TASKS
        return traced / TRACED_TASKS

    track_traced_bytes_per_queued_task.unit = "bytes"  # type: ignore[attr-defined]

    def peakmem_million_queued_tasks(self, implementation: str) -> None:
        """Peak RSS of the process while 1M tasks are queued (interpreter included)."""
        storage = _queue_many(self.pyapalis, MEMORY_TASKS, None)
        assert len(storage) == MEMORY_TASKS


class QueuedTaskResidentMemory(_QueuedTaskSuite):
    """The operating system's view: resident-set growth per queued task (Linux only).

    Includes what tracemalloc cannot see: pymalloc's rounding of each block up
    to a multiple of 16 bytes and its partly used pools and arenas.
    """

    def setup(self, implementation: str) -> None:
        if not os.path.exists(_STATM):
            raise NotImplementedError(f"{_STATM} is missing: not Linux")
        super().setup(implementation)

    def track_rss_bytes_per_queued_task(self, implementation: str) -> float:
        """Resident-set growth per task for 1M ``push_nowait``."""
        # No collection inside the window: freeing other garbage would
        # shrink the figure (even below zero at the test suite's small sizes).
        gc.disable()
        try:
            before = _rss_bytes()
            storage = _queue_many(self.pyapalis, MEMORY_TASKS, None)
            grown = _rss_bytes() - before
        finally:
            gc.enable()
        assert len(storage) == MEMORY_TASKS
        return grown / MEMORY_TASKS

    track_rss_bytes_per_queued_task.unit = "bytes"  # type: ignore[attr-defined]


_STATM = "/proc/self/statm"


def _rss_bytes() -> int:
    with open(_STATM, encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")
