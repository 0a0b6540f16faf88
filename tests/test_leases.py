"""The shared-backend model (``_kit._leases``) against an in-memory store, in virtual time.

Workers consume a :class:`FakeLeaseStore` through :class:`LeaseSession`: claims
in batches (never delaying a single task), fenced and batched settlements,
heartbeats extending leases, leaderless recovery of expired leases,
prefetched tasks handed back at exit, and a store that fails for a while.
The real stores (SQLite ...) run the same model in their own tests.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from _lease_fake import FakeLeaseStore

from pyapalis import EventKind, Status, WorkerBuilder, WorkerContext
from pyapalis.backends import RegisterWorker, RunsAlongside, SyncAck, WorkerIdentity, WorkerSessions
from pyapalis.backends import WorkerSession as WorkerSessionProtocol
from pyapalis.backends._kit._clock import run_clock
from pyapalis.backends._kit._leases import LeaseConfig, LeaseSession, LeaseStore, Settlement


class Shared:
    """A backend over the fake store: a LeaseSession per worker run."""

    def __init__(
        self, store: FakeLeaseStore, config: LeaseConfig, names: frozenset[str] | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.names = names
        self.sessions: list[LeaseSession] = []

    def session(self, worker: WorkerIdentity) -> LeaseSession:
        session = LeaseSession(self.store, worker, self.config, self.names)
        self.sessions.append(session)
        return session


def test_the_fake_and_the_session_are_what_the_protocols_describe() -> None:
    store = FakeLeaseStore()
    assert isinstance(store, LeaseStore)
    shared = Shared(store, LeaseConfig())
    assert isinstance(shared, WorkerSessions)
    session = shared.session(WorkerIdentity.mint("w", 1))
    for protocol in (WorkerSessionProtocol, SyncAck, RegisterWorker, RunsAlongside):
        assert isinstance(session, protocol)


def test_config_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="lease must be a positive number of seconds"):
        LeaseConfig(lease=0)
    with pytest.raises(ValueError, match="batch must be an integer >= 1"):
        LeaseConfig(batch=0)
    with pytest.raises(ValueError, match="prefetch must be an integer >= 0"):
        LeaseConfig(prefetch=-1)
    config = LeaseConfig(prefetch=8, batch=100)
    assert config.claim_limit(32, 0) == 40
    assert config.claim_limit(32, 31) == 9
    assert config.claim_limit(32, 40) == 1  # the caller is a free loop: at least one
    assert LeaseConfig(batch=10).claim_limit(32, 0) == 10


async def _run_until(worker: Any, done: trio.Event) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await done.wait()
        worker.context.stop()


async def test_two_workers_share_the_work_exactly_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeLeaseStore()
    shared = Shared(store, LeaseConfig())
    for item in range(300):
        store.push(item)
    seen: list[int] = []
    done = trio.Event()

    async def handler(item: int) -> int:
        seen.append(item)
        await trio.sleep(0.01)
        if len(seen) == 300:
            done.set()
        return item * 2

    workers = [
        WorkerBuilder(f"w{n}").backend(shared).concurrency(8).build(handler) for n in range(2)
    ]
    async with trio.open_nursery() as nursery:
        for worker in workers:
            nursery.start_soon(worker.run)
        await done.wait()
        await trio.sleep(1)
        for worker in workers:
            worker.context.stop()
    assert sorted(seen) == list(range(300))
    assert {row.status for row in store.rows.values()} == {Status.Done}
    assert all(row.result == row.args * 2 and len(row.runs) == 1 for row in store.rows.values())
    owners = {row.runs[0] for row in store.rows.values()}
    assert owners == {s.worker.id for s in shared.sessions}  # both took a share
    # Batched: far fewer round trips than tasks; settlements rode on claims.
    exchanges = [args for name, args in store.calls if name == "exchange"]
    assert len(exchanges) < 120
    assert all(limit <= 16 for _, limit in exchanges)  # free slots + prefetch, never the queue
    assert store.workers == {}  # both retired at exit


async def test_a_single_task_is_never_delayed_and_acks_are_flushed_within_ms(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeLeaseStore()
    shared = Shared(store, LeaseConfig(flush_interval=0.005))
    started: list[tuple[str, float]] = []

    async def handler(item: str) -> None:
        started.append((item, trio.current_time()))
        if item == "slow":
            await trio.sleep(10)

    worker = WorkerBuilder("w").backend(shared).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(500)  # idle for a long (virtual) time
        pushed = trio.current_time()
        first = store.push("fast")
        await trio.sleep(0.0001)
        assert started == [("fast", pushed)]  # taken at once: the push woke the idle claim
        # The worker went idle again: its next claim carried the ack at once.
        assert store.rows[first].status is Status.Done
        # Busy: a prefetched task runs next, without a claim; the ack waits
        # for the flusher (flush_interval), not for the slow task.
        fast, slow = store.push("fast"), store.push("slow")
        await trio.sleep(0.001)
        assert [item for item, _ in started] == ["fast", "fast", "slow"]
        assert store.rows[fast].status is Status.Running
        await trio.sleep(0.0045)
        assert store.rows[fast].status is Status.Done
        assert store.rows[slow].status is Status.Running
        worker.context.stop()
    assert store.rows[slow].status is Status.Done


async def test_a_session_given_names_claims_only_those_and_passes_them_to_every_claim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeLeaseStore()
    other = store.push("b", name="b")  # pushed first: an unfiltered claim would take it first
    plain = store.push("plain")
    mine = [store.push(f"a{i}", name="a") for i in range(3)]
    seen: list[str] = []
    all_done = trio.Event()

    async def handler(item: str) -> None:
        seen.append(item)
        if len(seen) == 3:
            all_done.set()

    worker = (
        WorkerBuilder("w").backend(Shared(store, LeaseConfig(), frozenset({"a"}))).build(handler)
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await all_done.wait()
        worker.context.stop()
    assert sorted(seen) == ["a0", "a1", "a2"]
    assert all(store.rows[task_id].status is Status.Done for task_id in mine)
    for task_id in (other, plain):
        assert (store.rows[task_id].status, store.rows[task_id].runs) == (Status.Pending, [])
    assert ("names", frozenset({"a"})) in store.calls
    # A session without names (a plain worker) takes everything, and never passes names.
    store.calls.clear()
    left: list[str] = []
    both = trio.Event()

    async def take_all(item: str) -> None:
        left.append(item)
        if len(left) == 2:
            both.set()

    worker = WorkerBuilder("plain").backend(Shared(store, LeaseConfig())).build(take_all)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await both.wait()
        worker.context.stop()
    assert left == ["b", "plain"]
    assert not [call for call in store.calls if call[0] == "names"]


async def test_a_scheduled_task_runs_when_due_not_at_the_next_poll(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeLeaseStore()
    shared = Shared(store, LeaseConfig(poll=60))
    started: list[float] = []

    async def handler(item: int) -> None:
        started.append(trio.current_time())

    worker = WorkerBuilder("w").backend(shared).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        store.push(1, run_at=run_clock().wall_now() + 2.5)
        await trio.sleep(10)
        worker.context.stop()
    assert started == [pytest.approx(3.5, abs=1e-6)]


async def test_heartbeats_keep_a_long_task_and_emit_heartbeat_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeLeaseStore()
    shared = Shared(store, LeaseConfig(lease=3.0))
    beats: list[float] = []

    async def handler(item: int) -> None:
        await trio.sleep(20)  # far past the lease: only heartbeats keep it

    def on_event(ctx: WorkerContext, event: Any) -> None:
        if event.kind is EventKind.HeartBeat:
            beats.append(trio.current_time())

    task_id = store.push(1)
    worker = WorkerBuilder("w").backend(shared).heartbeat(10).on_event(on_event).build(handler)
    other = WorkerBuilder("other").backend(shared).build(handler)  # recovers expired leases
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        nursery.start_soon(other.run)
        await trio.sleep(25)
        worker.context.stop()
        other.context.stop()
    row = store.rows[task_id]
    assert row.status is Status.Done and len(row.runs) == 1  # never taken for an orphan
    assert beats == [0.0, 10.0, 20.0]  # the worker's own events
    beat_calls = [args for name, args in store.calls if name == "heartbeat"]
    # The session beat every lease/3 between the worker's beats.
    assert beat_calls.count(row.runs[0]) >= 8


async def test_a_dead_workers_tasks_come_back_after_its_lease_and_its_late_ack_is_fenced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeLeaseStore()
    config = LeaseConfig(lease=10.0)
    shared = Shared(store, config)
    task_id = store.push("job", max_attempts=3)
    # A worker claims the task, then vanishes (no ack, no hand-back, no beats).
    dead = shared.session(WorkerIdentity.mint("dead", 1))
    with trio.move_on_after(1):
        task = await dead.take()
    assert store.rows[task_id].owner == dead.worker.id
    runs: list[tuple[float, int]] = []
    done = trio.Event()

    async def handler(item: str, ctx: WorkerContext) -> None:
        runs.append((trio.current_time(), store.rows[task_id].attempt))
        done.set()

    live = WorkerBuilder("live").backend(shared).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(live.run)
        await done.wait()
        await trio.sleep(1)
        live.context.stop()
    # Recovery every lease/2 = 5 s: the lease (10 s) expired at 10, seen at 15.
    assert runs == [(15.0, 2)]
    row = store.rows[task_id]
    assert row.status is Status.Done and row.runs[0] == dead.worker.id
    # The dead worker's late ack changes nothing.
    await dead.ack(task, Status.Failed, None, RuntimeError("late"))
    await dead.__aexit__(None, None, None)
    assert (row.status, row.error, row.attempt) == (Status.Done, None, 2)


async def test_a_task_out_of_attempts_fails_when_its_lease_expires(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeLeaseStore()
    shared = Shared(store, LeaseConfig(lease=4.0))
    task_id = store.push("job", max_attempts=1)
    dead = shared.session(WorkerIdentity.mint("dead", 1))
    await dead.take()
    live = WorkerBuilder("live").backend(shared).build(lambda item: None)
    with trio.move_on_after(7):
        await live.run()
    row = store.rows[task_id]
    assert (row.status, row.error) == (Status.Failed, "lease expired")


async def test_prefetched_tasks_go_back_uncounted_when_the_run_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeLeaseStore()
    shared = Shared(store, LeaseConfig(prefetch=4))
    ids = [store.push(item) for item in range(10)]
    started = trio.Event()

    async def handler(item: int) -> None:
        started.set()
        await trio.sleep(100)

    worker = WorkerBuilder("w").backend(shared).concurrency(2).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await started.wait()
        assert shared.sessions[0].held == 6  # 2 slots + 4 prefetched
        nursery.cancel_scope.cancel()
    rows = [store.rows[i] for i in ids]
    assert [r.status for r in rows] == [Status.Pending] * 10
    assert [r.attempt for r in rows] == [0] * 10  # neither the prefetch nor the runs counted
    assert shared.sessions[0].held == 0 and shared.sessions[0].pending == 0


async def test_a_failing_store_backs_off_and_nothing_is_lost(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeLeaseStore()
    shared = Shared(store, LeaseConfig())
    for item in range(40):
        store.push(item)
    seen: list[int] = []
    done = trio.Event()

    async def handler(item: int) -> None:
        seen.append(item)
        if item == 5:
            store.fail_next = 6  # the next six calls fail: claims, flushes, beats
        if len(seen) == 40:
            done.set()

    worker = WorkerBuilder("w").backend(shared).concurrency(4).build(handler)
    with caplog.at_level(logging.WARNING, logger="pyapalis.leases"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await done.wait()
            await trio.sleep(1)
            worker.context.stop()
    assert sorted(seen) == list(range(40))
    assert {row.status for row in store.rows.values()} == {Status.Done}
    assert all(len(row.runs) == 1 for row in store.rows.values())
    assert "disk full" in caplog.text and "trying again in" in caplog.text


async def test_a_retry_is_settled_with_its_next_run_at(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from pyapalis import RetryPolicy

    store = FakeLeaseStore()
    shared = Shared(store, LeaseConfig())
    task_id = store.push("x", max_attempts=3)
    runs: list[float] = []

    async def handler(item: str) -> None:
        runs.append(trio.current_time())
        if len(runs) < 3:
            raise RuntimeError("not yet")

    worker = WorkerBuilder("w").backend(shared).retry(RetryPolicy.retries(2)).build(handler)
    with trio.move_on_after(30):
        await worker.run()
    row = store.rows[task_id]
    assert (row.status, row.attempt, len(runs)) == (Status.Done, 3, 3)


async def test_ack_of_a_task_the_session_does_not_hold_is_refused() -> None:
    store = FakeLeaseStore()
    session = LeaseSession(store, WorkerIdentity.mint("w", 1), LeaseConfig())
    from pyapalis import Task

    with pytest.raises(ValueError, match="is not held by worker"):
        session.ack_nowait(Task("x"), Status.Done, None, None)
    with pytest.raises(ValueError, match="status must be Done, Failed or Killed"):
        session.ack_nowait(Task("x"), Status.Pending, None, None)
    assert Settlement("a", 1, Status.Done).release is False


async def test_a_store_that_fails_at_exit_leaves_the_tasks_to_their_leases(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeLeaseStore()
    shared = Shared(store, LeaseConfig(prefetch=2))
    ids = [store.push(item) for item in range(3)]
    session = shared.session(WorkerIdentity.mint("w", 1))
    with caplog.at_level(logging.WARNING, logger="pyapalis.leases"):
        async with session:
            task = await session.take()
            await session.ack(task, Status.Done, None, None)
            store.fail_next = 1  # the flush at exit (the ack and the hand-back) fails
    assert "could not write 3 outcome(s) at exit" in caplog.text
    assert "come back when their leases expire" in caplog.text
    # Nothing written: all three still Running under the run, until their leases expire.
    assert [store.rows[i].status for i in ids] == [Status.Running] * 3
    store.fail_next = 0
    assert await store.recover(run_clock().wall_now() + 31, 100) == 3


async def test_an_idle_worker_whose_wake_wait_fails_backs_off_and_goes_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeLeaseStore()
    shared = Shared(store, LeaseConfig())
    seen: list[float] = []
    worker = WorkerBuilder("w").backend(shared).build(lambda item: seen.append(item))
    with caplog.at_level(logging.WARNING, logger="pyapalis.leases"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await trio.sleep(1.5)  # idle: waiting on the wake hint
            store.fail_only = {"wait_wake"}
            store.fail_next = 2  # the next two idle waits fail
            await trio.sleep(2)
            store.push(7)
            await trio.sleep(1)
            worker.context.stop()
    assert seen == [7]
    assert store.fail_next == 0
    assert caplog.text.count("wait_wake refused") == 2


async def test_an_idle_worker_claims_once_per_wake_not_once_per_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeLeaseStore()
    shared = Shared(store, LeaseConfig(poll=60))
    seen: list[int] = []
    worker = WorkerBuilder("w").backend(shared).concurrency(16).build(seen.append)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(5)  # idle: one loop waits on the store, fifteen park
        before = len([c for c in store.calls if c[0] == "exchange"])
        for item in range(3):
            store.push(item)
            await trio.sleep(1)
        after = len([c for c in store.calls if c[0] == "exchange"])
        worker.context.stop()
    assert seen == [0, 1, 2]
    # Per push: the claim after the wake, and the one carrying its ack as the
    # worker goes idle again; never one per consumer loop.
    assert after - before == 6
