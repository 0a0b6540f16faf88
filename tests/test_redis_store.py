"""RedisStore's scripts, one store operation at a time, with explicit times.

Every operation takes ``now`` from its caller, so leases, schedules, recovery
and retention are checked here at exact instants, with no clock at all: the
claim order (priority, run_at, push order), fenced settlements, heartbeats
(``ZADD XX GT``), recovery of expired leases, hand-backs, uniqueness, ids
that exist, retention.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from _redis_support import REDIS_URL, drop_namespace, needs_redis, new_namespace

from pyapalis import Status, Task, TaskBuilder, TaskId
from pyapalis.backends import JsonCodec, WorkerIdentity
from pyapalis.backends._kit._leases import Settlement
from pyapalis.backends._redis._client import acquire, release
from pyapalis.backends._redis._keys import QueueKeys
from pyapalis.backends._redis._store import RedisStore

pytestmark = needs_redis

T0 = 1_700_000_000.0
LEASE = 30.0

MakeStore = Callable[..., RedisStore]


def worker(name: str) -> WorkerIdentity:
    return WorkerIdentity(
        name=name, id=f"{name}-id", host="test-host", pid=1, started_at=T0, concurrency=4
    )


@pytest.fixture
async def make_store() -> AsyncIterator[MakeStore]:
    namespace = new_namespace()
    client = await acquire(REDIS_URL)

    def make(queue: str = "q", retention: float = 3600.0) -> RedisStore:
        return RedisStore(client, QueueKeys(namespace, queue), JsonCodec(), retention, 90.0)

    try:
        yield make
    finally:
        await release(REDIS_URL)
        await drop_namespace(REDIS_URL, namespace)


async def push(store: RedisStore, *tasks: Task, now: float = T0) -> list[TaskId]:
    return await store.push([store.new_task(task) for task in tasks], now)


def at(args: object, run_at: float = T0, priority: int = 0, **kw: object) -> Task:
    builder = TaskBuilder(args).run_at_timestamp(run_at).priority(priority)
    if "id" in kw:
        builder = builder.id(str(kw["id"]))
    if "attempts" in kw:
        builder = builder.attempts(int(kw["attempts"]))  # type: ignore[call-overload]
    return builder.build()


async def test_claims_honour_priority_then_run_at_then_push_order(make_store: MakeStore) -> None:
    store = make_store()
    await push(
        store,
        at("late-low", run_at=T0 - 1),
        at("early-low", run_at=T0 - 5),
        at("high", priority=10),
        at("negative", priority=-(2**63)),
        at("top", priority=2**63 - 1),
        at("second-push-same-time", run_at=T0 - 5),
        at("future", run_at=T0 + 60),
    )
    claim = await store.exchange(worker("a"), [], 10, T0, LEASE)
    assert [c.task.args for c in claim.tasks] == [
        "top",
        "high",
        "early-low",
        "second-push-same-time",
        "late-low",
        "negative",
    ]
    assert claim.next_due == pytest.approx(T0 + 60, abs=0.002)
    # Not a millisecond early; due at its run_at.
    assert (await store.exchange(worker("a"), [], 10, T0 + 59.999, LEASE)).tasks == []
    [late] = (await store.exchange(worker("a"), [], 10, T0 + 60, LEASE)).tasks
    assert late.task.args == "future"


async def test_a_claim_takes_at_most_limit_and_marks_tasks_running(make_store: MakeStore) -> None:
    store = make_store()
    ids = await push(store, *(at(n) for n in range(5)))
    claim = await store.exchange(worker("a"), [], 2, T0, LEASE)
    assert [c.task.args for c in claim.tasks] == [0, 1]
    assert [c.attempt for c in claim.tasks] == [1, 1]
    task = claim.tasks[0].task
    assert task.parts.status is Status.Running
    assert task.parts.attempt.current() == 0  # the worker counts the execution it starts
    [stored] = await store.fetch([str(ids[0])])
    assert stored is not None and stored.parts.status is Status.Running
    assert stored.parts.attempt.current() == 1
    statuses = [r.status for r in await store.results([str(i) for i in ids]) if r]
    assert statuses == [Status.Running] * 2 + [Status.Pending] * 3


async def test_settlements_are_fenced_by_owner_and_attempt(make_store: MakeStore) -> None:
    store = make_store()
    [task_id] = await push(store, at("x"))
    [first] = (await store.exchange(worker("a"), [], 1, T0, LEASE)).tasks
    # Worker a vanishes; its lease expires and b takes the task.
    assert await store.recover(T0 + LEASE + 1, 100) == 1
    [second] = (await store.exchange(worker("b"), [], 1, T0 + LEASE + 1, LEASE)).tasks
    assert second.attempt == 2
    late = Settlement(str(task_id), first.attempt, Status.Done, result="from a")
    await store.exchange(worker("a"), [late], 0, T0 + LEASE + 2, LEASE)
    [result] = await store.results([str(task_id)])
    assert result is not None and result.status is Status.Running
    # A wrong attempt under the right owner changes nothing either.
    stale = Settlement(str(task_id), 1, Status.Done, result="stale")
    await store.exchange(worker("b"), [stale], 0, T0 + LEASE + 2, LEASE)
    [result] = await store.results([str(task_id)])
    assert result is not None and result.status is Status.Running
    done = Settlement(str(task_id), 2, Status.Done, result="from b")
    await store.exchange(worker("b"), [done], 0, T0 + LEASE + 3, LEASE)
    [result] = await store.results([str(task_id)])
    assert result is not None and result.unwrap() == "from b"


async def test_heartbeat_extends_held_leases_and_never_resurrects(make_store: MakeStore) -> None:
    store = make_store()
    await push(store, at("kept"), at("lost"))
    a = worker("a")
    kept, lost = (await store.exchange(a, [], 2, T0, LEASE)).tasks
    # Another worker reaps "lost" (as if its lease had expired) and finishes it.
    await store.exchange(
        a, [Settlement(str(lost.task.parts.task_id), 1, Status.Pending, release=True)], 0, T0, LEASE
    )
    assert await store.heartbeat(a, T0 + 20, LEASE) == 1
    # The lease now ends at T0 + 50: nothing to recover at T0 + 45.
    assert await store.recover(T0 + 45, 100) == 0
    assert await store.recover(T0 + 51, 100) == 1
    # A heartbeat after the reaping extends nothing.
    assert await store.heartbeat(a, T0 + 52, LEASE) == 0
    workers = await store.workers(T0 + 52, 30.0)
    assert [(info.id, info.name, info.host) for info in workers] == [("a-id", "a", "test-host")]
    assert await store.workers(T0 + 82.001, 30.0) == []
    assert kept.attempt == 1


async def test_recovery_counts_the_lost_attempt_and_fails_when_none_are_left(
    make_store: MakeStore,
) -> None:
    store = make_store()
    [once, twice] = await push(store, at("once", attempts=1), at("twice", attempts=2))
    await store.exchange(worker("a"), [], 2, T0, LEASE)
    assert await store.recover(T0 + LEASE, 100) == 0  # the deadline itself is still held
    assert await store.recover(T0 + LEASE + 0.001, 100) == 2
    results = {str(r.task_id): r for r in await store.results([str(once), str(twice)]) if r}
    assert results[str(once)].status is Status.Failed
    with pytest.raises(Exception, match="lease expired"):
        results[str(once)].unwrap()
    assert results[str(twice)].status is Status.Pending
    [again] = (await store.exchange(worker("b"), [], 5, T0 + 40, LEASE)).tasks
    assert again.task.args == "twice" and again.attempt == 2


async def test_recovery_is_bounded(make_store: MakeStore) -> None:
    store = make_store()
    await push(store, *(at(n) for n in range(7)))
    await store.exchange(worker("a"), [], 7, T0, LEASE)
    assert await store.recover(T0 + 100, 3) == 3
    assert await store.recover(T0 + 100, 3) == 3
    assert await store.recover(T0 + 100, 3) == 1


async def test_hand_back_does_not_count_and_retry_waits_for_its_run_at(
    make_store: MakeStore,
) -> None:
    store = make_store()
    [back, later] = await push(store, at("back"), at("later"))
    a = worker("a")
    claimed = {c.task.args: c for c in (await store.exchange(a, [], 2, T0, LEASE)).tasks}
    settle = [
        Settlement(str(back), claimed["back"].attempt, Status.Pending, release=True),
        Settlement(
            str(later), claimed["later"].attempt, Status.Pending, error="boom", run_at=T0 + 10
        ),
    ]
    claim = await store.exchange(a, settle, 5, T0 + 1, LEASE)
    assert [(c.task.args, c.attempt) for c in claim.tasks] == [("back", 1)]
    assert claim.next_due == pytest.approx(T0 + 10, abs=0.002)
    assert (await store.exchange(a, [], 5, T0 + 9.99, LEASE)).tasks == []
    [retried] = (await store.exchange(a, [], 5, T0 + 10, LEASE)).tasks
    assert (retried.task.args, retried.attempt) == ("later", 2)


async def test_a_stored_id_is_never_stored_twice(make_store: MakeStore) -> None:
    store = make_store()
    [first] = await push(store, at("one", id="fixed"))
    [again] = await push(store, at("two", id="fixed"))
    assert first == again == TaskId("fixed")
    [task] = await store.fetch(["fixed"])
    assert task is not None and task.args == "one"
    # Also once it is finished (until it is deleted).
    [claimed] = (await store.exchange(worker("a"), [], 1, T0, LEASE)).tasks
    done = Settlement("fixed", claimed.attempt, Status.Done, result=1)
    await store.exchange(worker("a"), [done], 0, T0, LEASE)
    assert await push(store, at("three", id="fixed")) == [TaskId("fixed")]
    assert await store.delete("fixed") == 1
    assert await push(store, at("four", id="fixed")) == [TaskId("fixed")]
    [task] = await store.fetch(["fixed"])
    assert task is not None and task.args == "four"


async def test_a_uniqueness_key_blocks_only_while_pending_or_running(
    make_store: MakeStore,
) -> None:
    store = make_store()
    [first] = await store.push([store.new_task(at("a"), "k")], T0)
    [second] = await store.push([store.new_task(at("b"), "k")], T0)
    assert second == first
    [claimed] = (await store.exchange(worker("a"), [], 1, T0, LEASE)).tasks
    [third] = await store.push([store.new_task(at("c"), "k")], T0)
    assert third == first  # Running still holds it
    failed = Settlement(str(first), claimed.attempt, Status.Failed, error="no")
    await store.exchange(worker("a"), [failed], 0, T0, LEASE)
    [fourth] = await store.push([store.new_task(at("d"), "k")], T0)
    assert fourth != first


async def test_finished_tasks_expire_after_the_retention(make_store: MakeStore) -> None:
    store = make_store(retention=100.0)
    ids = await push(store, at(1), at(2))
    a = worker("a")
    claimed = (await store.exchange(a, [], 2, T0, LEASE)).tasks
    done = [
        Settlement(str(c.task.parts.task_id), c.attempt, Status.Done, result=0) for c in claimed
    ]
    await store.exchange(a, done[:1], 0, T0, LEASE)
    await store.exchange(a, done[1:], 0, T0 + 50, LEASE)
    assert await store.count() == 2
    await store.recover(T0 + 99.999, 100)
    assert await store.count() == 2
    await store.recover(T0 + 100, 100)
    first, second = await store.results([str(i) for i in ids])
    assert first is None
    assert second is not None and second.status is Status.Done
    await store.recover(T0 + 150, 100)
    assert await store.count() == 0
    assert await store.results([str(i) for i in ids]) == [None, None]
    # An expired id stays known (a periodic tick runs once): pushing it stores nothing,
    # until it is deleted, and for another retention at most.
    again = TaskBuilder("again").id(str(ids[0])).build()
    assert await store.push([store.new_task(again)], T0 + 150) == [ids[0]]
    assert await store.count() == 0
    assert await store.delete(str(ids[0])) == 1
    assert await store.push([store.new_task(again)], T0 + 150) == [ids[0]]
    assert await store.count() == 1
    await store.recover(T0 + 250.001, 100)  # the second id is forgotten after a retention
    assert await store.push([store.new_task(at("b", id=str(ids[1])))], T0 + 251) == [ids[1]]
    assert await store.count() == 2
