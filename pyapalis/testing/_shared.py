"""The conformance cases of shared backends: several processes on one store.

A shared backend (SQLite, PostgreSQL, Redis ...) runs them by subclassing
:class:`SharedBackendConformance` and providing a ``shared_harness`` fixture
that returns a :class:`SharedBackendHarness`: a URL every process opens the
backend from, with a short lease, and the lease it sets::

    from pyapalis.testing import SharedBackendConformance, SharedBackendHarness

    class TestSharedPostgres(SharedBackendConformance):
        @pytest.fixture
        def shared_harness(self, fresh_schema):
            return SharedBackendHarness(
                url=f"postgresql://localhost/test?schema={fresh_schema}&lease=1", lease=1.0
            )

The URL goes through ``pyapalis.open_backend`` in the test and in the worker
processes the cases start (``python -m pyapalis.testing._shared_child``), or
through ``factory`` (``"module:callable"`` taking the URL), which a child
process must be able to import. Every case starts from an empty store.

The cases: two worker processes share the work exactly once; ``wait_for``
sees results of tasks run in another process; a SIGKILLed worker's tasks are
run by another once its lease expires, counted as an attempt; an ack from a
worker that lost its lease changes nothing; ``list_workers`` shows the live
workers (and forgets one that stopped, or died, after its lease); a pool
leaves task names it does not know for a pool that knows them
(``_shared_names``). They run on
the real clock with real processes (a few seconds each): every wait is for
something observable, bounded by a generous ``fail_after``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from .._implementation import TaskBuilder, TaskId
from .._status import Status
from ..backends._worker_protocols import WorkerIdentity, WorkerSessions
from ._resolve import resolve
from ._shared_names import TaskNamesConformance
from .conformance import _trio_test

__all__ = ["SharedBackendConformance", "SharedBackendHarness"]

PATIENCE = 60.0
"""Seconds any one wait of a case may take before the case fails (a loaded CI machine)."""


@dataclasses.dataclass
class SharedBackendHarness:
    """Where the shared cases find the backend: a URL, its lease, and how to open it."""

    url: str
    lease: float
    factory: str = "pyapalis.backends._open:open_backend"


@dataclasses.dataclass
class _Child:
    name: str
    process: trio.Process
    log: Path
    ready: Path

    def executions(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


class _Fleet:
    """The worker processes of one case (killed at the end, whatever happened)."""

    def __init__(self, harness: SharedBackendHarness, directory: Path) -> None:
        self.harness = harness
        self.directory = directory
        self.children: list[_Child] = []

    async def start(
        self,
        name: str,
        *,
        concurrency: int = 1,
        delay: float = 0.0,
        hang: bool = False,
        gate: Path | None = None,
    ) -> _Child:
        log = self.directory / f"{name}.log"
        ready = self.directory / f"{name}.ready"
        config = {
            "factory": self.harness.factory,
            "url": self.harness.url,
            "name": name,
            "log": str(log),
            "ready": str(ready),
            "concurrency": concurrency,
            "delay": delay,
            "hang": hang,
            "gate": None if gate is None else str(gate),
        }
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "pyapalis.testing._shared_child", json.dumps(config)]
        )
        child = _Child(name, process, log, ready)
        self.children.append(child)
        return child

    async def ready(self, *children: _Child) -> None:
        with trio.fail_after(PATIENCE):
            for child in children:
                while not child.ready.exists():
                    if child.process.poll() is not None:
                        pytest.fail(f"worker process {child.name} exited early")
                    await trio.sleep(0.01)

    async def stop(self, child: _Child) -> None:
        """SIGTERM: a graceful stop; it must exit 0."""
        child.process.send_signal(signal.SIGTERM)
        with trio.fail_after(PATIENCE):
            code = await child.process.wait()
        assert code == 0, f"worker process {child.name} exited with {code} after SIGTERM"

    async def kill(self, child: _Child) -> None:
        child.process.kill()
        with trio.fail_after(PATIENCE):
            await child.process.wait()

    async def close(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                child.process.kill()
                await child.process.wait()


def _supports_sessions(backend: Any) -> bool:
    """Whether ``backend`` hands out a session per worker run (without narrowing its type)."""
    return isinstance(backend, WorkerSessions)


class SharedBackendConformance(TaskNamesConformance):
    """Subclass it and provide a ``shared_harness`` fixture (see the module docstring)."""

    @pytest.fixture
    async def fleet(
        self, shared_harness: SharedBackendHarness, tmp_path: Path
    ) -> AsyncIterator[_Fleet]:
        fleet = _Fleet(shared_harness, tmp_path)
        try:
            yield fleet
        finally:
            with trio.CancelScope(shield=True):
                await fleet.close()

    @pytest.fixture
    async def shared(self, shared_harness: SharedBackendHarness) -> AsyncIterator[Any]:
        backend = resolve(shared_harness.factory)(shared_harness.url)
        async with backend:
            yield backend

    @staticmethod
    async def _results(backend: Any, ids: list[TaskId]) -> dict[TaskId, Any]:
        results = {}
        with trio.fail_after(PATIENCE):
            async for result in backend.wait_for(ids):
                results[result.task_id] = result
        return results

    @_trio_test
    async def test_two_worker_processes_share_the_work_exactly_once(
        self, shared: Any, fleet: _Fleet
    ) -> None:
        # Each handler waits at a gate until both processes have started a
        # task: a process holds at most its slots plus its prefetch, so the
        # other one always gets a share, however the machine schedules them.
        gate = fleet.directory / "gate"
        one = await fleet.start("shared-one", concurrency=4, delay=0.005, gate=gate)
        two = await fleet.start("shared-two", concurrency=4, delay=0.005, gate=gate)
        await fleet.ready(one, two)
        ids = await shared.push_bulk(range(300))
        with trio.fail_after(PATIENCE):
            while not (one.executions() and two.executions()):
                await trio.sleep(0.01)
        gate.touch()
        results = await self._results(shared, ids)
        await fleet.stop(one)
        await fleet.stop(two)
        runs = one.executions() + two.executions()
        assert sorted(run["item"] for run in runs) == list(range(300)), "each task ran once"
        assert one.executions() and two.executions(), "both processes took a share"
        by_id = {run["id"]: run for run in runs}
        for task_id in ids:
            result = results[task_id]
            assert result.status is Status.Done
            assert result.unwrap() == {
                "item": by_id[str(task_id)]["item"],
                "pid": by_id[str(task_id)]["pid"],
            }

    @_trio_test
    async def test_wait_for_sees_results_from_another_process(
        self, shared: Any, fleet: _Fleet
    ) -> None:
        child = await fleet.start("shared-results")
        await fleet.ready(child)
        first = await shared.push("first")
        with trio.fail_after(PATIENCE):
            single = await shared.wait_for_single(first)
        pid = child.process.pid
        assert single.unwrap() == {"item": "first", "pid": pid}
        ids = [await shared.push(n) for n in range(5)]
        results = await self._results(shared, ids)
        assert [results[i].unwrap() for i in ids] == [{"item": n, "pid": pid} for n in range(5)]
        assert [r.status for r in await shared.check_status(ids)] == [Status.Done] * 5
        await fleet.stop(child)

    @_trio_test
    async def test_a_killed_workers_tasks_are_resumed_by_another_after_its_lease(
        self, shared: Any, fleet: _Fleet
    ) -> None:
        doomed = await fleet.start("shared-doomed", concurrency=3, hang=True)
        await fleet.ready(doomed)
        ids = [await shared.push_task(TaskBuilder(n).attempts(3).build()) for n in range(3)]
        with trio.fail_after(PATIENCE):
            while len(doomed.executions()) < 3:
                await trio.sleep(0.01)
        await fleet.kill(doomed)  # SIGKILL: no ack, no hand-back
        assert [r.status for r in await shared.check_status(ids)] == [Status.Running] * 3
        heir = await fleet.start("shared-heir")
        results = await self._results(shared, ids)
        assert all(results[i].status is Status.Done for i in ids)
        runs = heir.executions()
        assert sorted(run["id"] for run in runs) == sorted(str(i) for i in ids)
        assert {run["attempt"] for run in runs} == {2}, "the killed execution counts"
        await fleet.stop(heir)

    @_trio_test
    async def test_a_late_ack_after_the_lease_is_lost_changes_nothing(
        self, shared: Any, shared_harness: SharedBackendHarness
    ) -> None:
        if not _supports_sessions(shared):
            pytest.fail(f"{type(shared).__name__} is shared but has no session() (WorkerSessions)")
        task_id = await shared.push_task(TaskBuilder("contested").attempts(3).build())
        late = shared.session(WorkerIdentity.mint("late", 1))
        heir = shared.session(WorkerIdentity.mint("heir", 1))
        async with heir:
            async with late:
                lost = await late.take()
                assert lost.parts.task_id == task_id
                # No heartbeat: the lease runs out (the wall clock the store reads).
                await trio.sleep(shared_harness.lease * 1.5)
                assert await shared.resume_abandoned() == 1
                with trio.fail_after(PATIENCE):
                    taken = await heir.take()
                assert taken.parts.task_id == task_id
                await late.ack(lost, Status.Failed, None, RuntimeError("late"))
            # The late session is closed: its ack was written, and fenced off.
            [result] = await shared.check_status([task_id])
            assert result.status is Status.Running
            await heir.ack(taken, Status.Done, "from the heir", None)
        [result] = await shared.check_status([task_id])
        assert (result.status, result.unwrap()) == (Status.Done, "from the heir")
        stored = await shared.fetch_by_id(task_id)
        assert stored.parts.attempt.current() == 2

    @_trio_test
    async def test_list_workers_shows_the_live_workers(
        self, shared: Any, shared_harness: SharedBackendHarness, fleet: _Fleet
    ) -> None:
        one = await fleet.start("shared-alpha")
        two = await fleet.start("shared-beta")
        await fleet.ready(one, two)

        async def live() -> set[tuple[str, int]]:
            return {(info.name, info.pid) for info in await shared.list_workers()}

        expected = {("shared-alpha", one.process.pid), ("shared-beta", two.process.pid)}
        with trio.fail_after(PATIENCE):
            while await live() != expected:
                await trio.sleep(0.01)
        infos = await shared.list_workers()
        assert all(info.id and info.host and info.last_seen > 0 for info in infos)
        assert len({info.id for info in infos}) == 2
        await fleet.stop(one)  # a stopped worker leaves the list at once
        assert await live() == {("shared-beta", two.process.pid)}
        await fleet.kill(two)  # a killed one once its lease has passed
        with trio.fail_after(PATIENCE):
            while await live():
                await trio.sleep(0.05)
        assert os.getpid() not in {pid for _, pid in await live()}
