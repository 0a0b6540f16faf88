"""The shared-backend case of task names: a mixed-version deploy on one store.

Two pools consume one queue of a shared store: an "old" one that registered
only task type A, and a "new" one that also knows B. The old pool must leave
B Pending, never claimed (``FiltersTaskNames``), and the new one runs it. A
backend that claimed B for the old pool would fail it (``UnknownTaskError``)
or, prefetched and handed back, still show it claimed; both fail the case.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import trio

from .._status import Status
from ..backends._worker_protocols import FiltersTaskNames
from ..typed._pool import QueueConfig, RetentionMode, WorkerPool
from ..typed._task import BackgroundTask, CurrentTask
from ._resolve import resolve
from .conformance import _trio_test

__all__ = ["TaskNamesConformance"]

PATIENCE = 60.0


@dataclasses.dataclass
class _Runs:
    """The app of both pools: which task names ran, and an event per name."""

    names: list[str] = dataclasses.field(default_factory=list)
    events: dict[str, trio.Event] = dataclasses.field(
        default_factory=lambda: {"a": trio.Event(), "b": trio.Event()}
    )

    def ran(self, name: str) -> None:
        self.names.append(name)
        self.events[name].set()


class _TaskA(BackgroundTask):
    TASK_NAME = "pyapalis-conformance-a"
    label: str

    async def run(self, task: CurrentTask, app: _Runs) -> None:
        app.ran("a")


class _TaskB(BackgroundTask):
    TASK_NAME = "pyapalis-conformance-b"
    label: str

    async def run(self, task: CurrentTask, app: _Runs) -> None:
        app.ran("b")


def _pool(backend: Any, runs: _Runs, name: str, *types: type[BackgroundTask]) -> WorkerPool:
    pool = WorkerPool(backend, lambda: runs, name=name)
    for task_type in types:
        pool.register_task_type(task_type)
    return pool.configure_queue(QueueConfig("default", retention=RetentionMode.KeepAll))


def _filters(backend: Any) -> bool:
    """Whether ``backend`` offers ``FiltersTaskNames`` (without narrowing its type)."""
    return isinstance(backend, FiltersTaskNames)


class TaskNamesConformance:
    """Mixed into :class:`~pyapalis.testing.SharedBackendConformance`."""

    @_trio_test
    async def test_a_pool_leaves_task_names_it_does_not_know_for_a_pool_that_knows_them(
        self, shared: Any, shared_harness: Any
    ) -> None:
        if not _filters(shared):
            pytest.fail(
                f"{type(shared).__name__} is shared but cannot filter task names "
                "(FiltersTaskNames: only_task_names)"
            )
        open_backend = resolve(shared_harness.factory)
        # B first: a claim that did not filter would take it (prefetch takes both).
        b_id = await _TaskB("new type").enqueue(shared)
        a_id = await _TaskA("old type").enqueue(shared)
        runs = _Runs()
        async with open_backend(shared_harness.url) as old_deploy:
            with trio.fail_after(PATIENCE):
                await _pool(old_deploy, runs, "old", _TaskA).run_until(runs.events["a"].wait)
        assert runs.names == ["a"]
        left = await shared.fetch_by_id(b_id)
        assert left is not None
        assert (left.parts.status, left.parts.attempt.current()) == (Status.Pending, 0)
        async with open_backend(shared_harness.url) as new_deploy:
            with trio.fail_after(PATIENCE):
                pool = _pool(new_deploy, runs, "new", _TaskA, _TaskB)
                await pool.run_until(runs.events["b"].wait)
        assert runs.names == ["a", "b"]
        statuses = await shared.check_status([a_id, b_id])
        assert [result.status for result in statuses] == [Status.Done, Status.Done]
