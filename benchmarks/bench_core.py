"""Benchmarks of the task core: tasks, the builder, extensions, attempts, ids.

Every suite runs on both implementations, side by side: ``cython`` is the
compiled ``pyapalis._core`` (what ships), ``python`` the pure-Python twin
``pyapalis._twin`` (the specification and fallback). The ``cython`` rows are
skipped when the extension is not built.

Each timed call does a batch of ``BATCH`` operations so that the timer and the
call overhead of asv stay out of the figure: the cost of one operation is the
reported time divided by ``BATCH``. The loops bind methods to locals first;
that per-iteration loop overhead (a few tens of ns) is the same for both
implementations and is included in the figures. Fixtures are built in
``setup()``, outside the timed region.
"""

from __future__ import annotations

import gc
import itertools
import tracemalloc
from types import ModuleType
from typing import Any, ClassVar

#: Operations per timed call; per-operation cost = reported time / BATCH.
BATCH = 10_000

#: Tasks created for the memory figures (1M, as the performance target says).
MEMORY_TASKS = 1_000_000

#: Tasks created when every traced block is inspected one by one (a snapshot
#: of 1M tasks would hold millions of trace records in memory).
SNAPSHOT_TASKS = 100_000

#: pymalloc hands out blocks in multiples of 16 bytes (64-bit CPython >= 3.8)
#: for requests up to 512 bytes; larger ones go to the system malloc.
PYMALLOC_ALIGNMENT = 16
PYMALLOC_MAX_BLOCK = 512


def load_core(implementation: str) -> ModuleType:
    """The core module for ``implementation``; NotImplementedError skips a row."""
    if implementation == "cython":
        try:
            from pyapalis import _core
        except ImportError as exc:  # a checkout that was never compiled
            raise NotImplementedError(f"pyapalis._core is not built: {exc}") from exc
        return _core
    if implementation == "python":
        from pyapalis import _twin

        return _twin
    raise ValueError(f"unknown implementation {implementation!r}")


class Db:
    """A value stored in Extensions (a database handle, say)."""


class Config:
    """A second value type stored in Extensions."""


class Mailer:
    """A third value type stored in Extensions."""


class Absent:
    """A type that is never stored, for missed lookups."""


class _CoreSuite:
    """Base of the suites: chooses the implementation in ``setup()``."""

    params: ClassVar[list[list[str]]] = [["cython", "python"]]
    param_names: ClassVar[list[str]] = ["implementation"]

    core: ModuleType

    def setup(self, implementation: str) -> None:
        self.core = load_core(implementation)
        # A loop of BATCH iterations that allocates nothing per iteration.
        self.repeat_none = list(itertools.repeat(None, BATCH))


class TaskCreation(_CoreSuite):
    """``Task(args)`` with every default: new Parts and Attempt, run_at = now, no id."""

    def setup(self, implementation: str) -> None:
        super().setup(implementation)
        self.args = list(range(BATCH))

    def time_create(self, implementation: str) -> None:
        """BATCH (10,000) ``Task(i)``, each dropped at once (freelists recycle the memory)."""
        task_cls = self.core.Task
        for args in self.args:
            task_cls(args)

    def time_create_kept(self, implementation: str) -> None:
        """BATCH (10,000) ``Task(i)`` kept alive in a list, then all freed (as a queue fills)."""
        task_cls = self.core.Task
        tasks = [task_cls(args) for args in self.args]
        del tasks


class TaskBuild(_CoreSuite):
    """The seed's builder chain, from the builder's creation to ``build()``."""

    def setup(self, implementation: str) -> None:
        super().setup(implementation)
        self.names = [f"task-{i}" for i in range(BATCH)]

    def time_builder_chain(self, implementation: str) -> None:
        """BATCH (10,000) builds of the seed's chain, from a new builder each time.

        ``TaskBuilder(x).id(x).attempts(3).timeout(30).run_in_minutes(10).build()``
        """
        builder_cls = self.core.TaskBuilder
        for name in self.names:
            builder_cls(name).id(name).attempts(3).timeout(30).run_in_minutes(10).build()

    def time_builder_minimal(self, implementation: str) -> None:
        """BATCH (10,000) ``TaskBuilder(x).build()``: the builder's fixed cost."""
        builder_cls = self.core.TaskBuilder
        for name in self.names:
            builder_cls(name).build()


class ExtensionsOps(_CoreSuite):
    """The type-keyed map a task and a worker carry (three values stored)."""

    def setup(self, implementation: str) -> None:
        super().setup(implementation)
        self.extensions = self.core.Extensions([Db(), Config(), Mailer()])
        self.value = Config()

    def time_get(self, implementation: str) -> None:
        """BATCH (10,000) ``ext.get(Db)`` hits."""
        get = self.extensions.get
        for _ in self.repeat_none:
            get(Db)

    def time_get_missing(self, implementation: str) -> None:
        """BATCH (10,000) ``ext.get(Absent)`` misses (None)."""
        get = self.extensions.get
        for _ in self.repeat_none:
            get(Absent)

    def time_insert(self, implementation: str) -> None:
        """BATCH (10,000) ``ext.insert(value)`` replacing the value of the same type."""
        insert = self.extensions.insert
        value = self.value
        for _ in self.repeat_none:
            insert(value)

    def time_insert_into_empty(self, implementation: str) -> None:
        """BATCH (10,000) ``Extensions()`` then one ``insert`` (first value of a task)."""
        extensions_cls = self.core.Extensions
        value = self.value
        for _ in self.repeat_none:
            extensions_cls().insert(value)


class AttemptOps(_CoreSuite):
    """The shared execution counter."""

    def setup(self, implementation: str) -> None:
        super().setup(implementation)
        self.attempt = self.core.Attempt()
        self.task = self.core.Task("payload")

    def time_increment(self, implementation: str) -> None:
        """BATCH (10,000) ``attempt.increment()`` on one Attempt."""
        increment = self.attempt.increment
        for _ in self.repeat_none:
            increment()

    def time_increment_through_task(self, implementation: str) -> None:
        """BATCH (10,000) ``task.parts.attempt.increment()``, the worker's path."""
        task = self.task
        for _ in self.repeat_none:
            task.parts.attempt.increment()


class TaskIdOps(_CoreSuite):
    """ULID task ids: generation, printing, parsing."""

    def setup(self, implementation: str) -> None:
        super().setup(implementation)
        task_id_cls = self.core.TaskId
        self.ulid_texts = [str(task_id_cls.generate()) for _ in range(BATCH)]

    def time_generate(self, implementation: str) -> None:
        """BATCH (10,000) ``TaskId.generate()``; ids/s = BATCH / time."""
        generate = self.core.TaskId.generate
        for _ in self.repeat_none:
            generate()

    def time_generate_str(self, implementation: str) -> None:
        """BATCH (10,000) ``str(TaskId.generate())`` (the compiled core encodes lazily)."""
        generate = self.core.TaskId.generate
        for _ in self.repeat_none:
            str(generate())

    def time_parse_ulid(self, implementation: str) -> None:
        """BATCH (10,000) ``TaskId(text)`` of canonical ULID text (decoded and kept)."""
        task_id_cls = self.core.TaskId
        for text in self.ulid_texts:
            task_id_cls(text)


class TaskClone(_CoreSuite):
    """``task.clone()``: new Parts, shared Attempt, shallow copies of data and ctx."""

    def setup(self, implementation: str) -> None:
        super().setup(implementation)
        core = self.core
        self.plain = core.Task("payload")
        self.plain.parts.task_id = core.TaskId.generate()
        self.rich = (
            core.TaskBuilder("payload")
            .id(core.TaskId.generate())
            .data(Db())
            .meta(Config())
            .attempts(3)
            .build()
        )

    def time_clone(self, implementation: str) -> None:
        """BATCH (10,000) clones of a task with an id and no data or ctx."""
        clone = self.plain.clone
        for _ in self.repeat_none:
            clone()

    def time_clone_with_data_and_meta(self, implementation: str) -> None:
        """BATCH (10,000) clones of a task with one data value and one meta value."""
        clone = self.rich.clone
        for _ in self.repeat_none:
            clone()


def _new_task_with_id(core: ModuleType) -> Any:
    task = core.Task(None)
    task.parts.task_id = core.TaskId.generate()
    return task


def _traced_task_blocks(core: ModuleType, count: int, snapshot: bool) -> tuple[int, list[int]]:
    """Trace the creation of ``count`` tasks, each with a generated TaskId.

    Returns the traced bytes (the sizes the allocator was asked for) and, if
    ``snapshot``, the size of every traced block. Every task shares one args
    object, so args are excluded; the list holding the tasks is allocated before
    tracing starts. Creating some tasks first empties the compiled core's
    freelists, so every measured object comes from the allocator.
    """
    task_cls = core.Task
    generate = core.TaskId.generate
    args = "payload"
    tasks: list[Any] = [None] * count
    drain = [_new_task_with_id(core) for _ in range(1024)]
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # no cycles here; collections would only slow the loop
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            task = task_cls(args)
            task.parts.task_id = generate()
            tasks[i] = task
        traced = tracemalloc.get_traced_memory()[0] - before
        sizes = [trace.size for trace in tracemalloc.take_snapshot().traces] if snapshot else []
    finally:
        tracemalloc.stop()
        if gc_was_enabled:
            gc.enable()
    del tasks, drain
    return traced, sizes


def _pymalloc_block(size: int) -> int:
    if size > PYMALLOC_MAX_BLOCK:
        return size
    return -(-size // PYMALLOC_ALIGNMENT) * PYMALLOC_ALIGNMENT


class TaskMemory(_CoreSuite):
    """Memory held by a queued task: Task, Parts, Attempt, TaskId and what they own.

    The args are shared by every task, hence excluded; the id is generated, as a
    backend assigns one on push.
    """

    timeout = 300.0

    def setup(self, implementation: str) -> None:
        self.core = load_core(implementation)

    def track_bytes_per_task(self, implementation: str) -> float:
        """tracemalloc bytes per task (1M tasks with generated ids): the sizes requested."""
        traced, _ = _traced_task_blocks(self.core, MEMORY_TASKS, snapshot=False)
        return traced / MEMORY_TASKS

    track_bytes_per_task.unit = "bytes"  # type: ignore[attr-defined]

    def track_pymalloc_bytes_per_task(self, implementation: str) -> float:
        """Bytes per task as pymalloc hands them out: each traced block rounded up to 16.

        Over 100k tasks (each traced block is inspected). Pool and arena
        overhead of pymalloc is not included.
        """
        _, sizes = _traced_task_blocks(self.core, SNAPSHOT_TASKS, snapshot=True)
        return sum(_pymalloc_block(size) for size in sizes) / SNAPSHOT_TASKS

    track_pymalloc_bytes_per_task.unit = "bytes"  # type: ignore[attr-defined]

    def track_blocks_per_task(self, implementation: str) -> float:
        """Allocator blocks per task (Python objects and buffers), over 100k tasks."""
        _, sizes = _traced_task_blocks(self.core, SNAPSHOT_TASKS, snapshot=True)
        return len(sizes) / SNAPSHOT_TASKS

    track_blocks_per_task.unit = "blocks"  # type: ignore[attr-defined]

    def peakmem_million_tasks(self, implementation: str) -> None:
        """Peak RSS of the process holding 1M tasks with generated ids (interpreter included)."""
        core = self.core
        tasks = [_new_task_with_id(core) for _ in range(MEMORY_TASKS)]
        del tasks
