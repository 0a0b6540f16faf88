"""The listening session one trio run shares among its PostgresStorages on one server.

Real clock (the server is real). Storages poll every 60 s here, far beyond every
bound the tests wait (``fail_after``), so a wake-up within the bound came from a
notification; the waits themselves are events and bounded polls of the server.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable

import pytest
import trio
import trio.testing

from pyapalis import PostgresStorage, WorkerBuilder, WorkerContext
from pyapalis.backends._postgres._listener import ListenerStatistics
from tests._postgres import DSN, needs_postgres
from tests._postgres import pg_schema as pg_schema

pytestmark = needs_postgres

POLL = 60.0
BOUND = 20.0  # the generous limit of every real-world wait below


async def _admin(sql: str, *params: str) -> list[list[bytes | None]]:
    from pyapalis.backends._postgres._connections import driver

    conn = await driver().connect(DSN)
    try:
        rows: list[list[bytes | None]] = await conn.execute(
            sql.encode(), [param.encode() for param in params]
        )
        return rows
    finally:
        conn.close()


async def _listener_pids(schema: str) -> set[int]:
    """The server processes of this schema's listening sessions (``pg_stat_activity``)."""
    rows = await _admin(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1::text",
        f"pyapalis-listener:{schema}",
    )
    return {int(row[0] or 0) for row in rows}


async def _until(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` (every 10 ms) until it holds; ``fail_after`` bounds it."""
    with trio.fail_after(BOUND):
        while not check():
            await trio.sleep(0.01)
    assert check(), what


async def _until_server(schema: str, pids: Callable[[set[int]], bool]) -> set[int]:
    with trio.fail_after(BOUND):
        while True:
            found = await _listener_pids(schema)
            if pids(found):
                return found
            await trio.sleep(0.02)


def _statistics(storage: PostgresStorage) -> ListenerStatistics:
    found = storage._connections.listener_statistics()
    assert found is not None, "the storage has no listener"
    return found


async def _owner_locked(storage: PostgresStorage, owner: str, pid: int) -> bool:
    """Whether server process ``pid`` holds ``owner``'s liveness lock."""
    statements = storage._connections.statements
    rows = await _admin(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND pid = $2::int"
        " AND ((classid::bigint << 32) | objid::bigint)"
        " = hashtextextended($1::text, 0) & x'ffffffffffffffff'::bigint",
        statements.owner_key(owner),
        str(pid),
    )
    return int(rows[0][0] or 0) == 1


@pytest.fixture
async def pair(pg_schema: str) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    """Two storages built separately (queues ``a`` and ``b``) on one server and schema."""
    first = PostgresStorage(DSN, schema=pg_schema, queue="a", poll=POLL)
    second = PostgresStorage(DSN, schema=pg_schema, queue="b", poll=POLL)
    async with first, second:
        yield first, second


def _push_elsewhere(schema: str, queue: str, item: object) -> None:
    """Push from a plain thread's blocking session: only the NOTIFY can wake this run."""
    storage = PostgresStorage(DSN, schema=schema, queue=queue)
    try:
        storage.push_sync(item)
    finally:
        storage.close()


class _Waiters:
    """Waits on each queue's wake-up, recording which queues were woken, in order."""

    def __init__(self) -> None:
        self.woken: list[str] = []

    async def wait(self, storage: PostgresStorage, queue: str) -> None:
        await storage.lease_store().wait_wake(POLL)
        self.woken.append(queue)


async def test_two_storages_share_one_listening_session_and_each_hears_its_queue(
    pair: tuple[PostgresStorage, PostgresStorage], pg_schema: str
) -> None:
    first, second = pair
    (pid,) = await _until_server(pg_schema, lambda pids: len(pids) == 1)
    assert _statistics(first) == _statistics(second)
    stats = _statistics(first)
    assert (stats.subscribers, stats.connects, stats.listening) == (2, 1, True)
    assert stats.backend_pid == pid
    waiters = _Waiters()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiters.wait, first, "a")
        nursery.start_soon(waiters.wait, second, "b")
        await trio.testing.wait_all_tasks_blocked()
        await trio.to_thread.run_sync(_push_elsewhere, pg_schema, "b", "for b")
        await _until(lambda: waiters.woken == ["b"], "b woken")
        # A notification wakes its subscribers in one go: had it woken a too, a
        # would have run by the time every task is blocked again.
        await trio.testing.wait_all_tasks_blocked()
        assert waiters.woken == ["b"], "a notification for b woke a"
        await trio.to_thread.run_sync(_push_elsewhere, pg_schema, "a", "for a")
        await _until(lambda: waiters.woken == ["b", "a"], "a woken")
    assert _statistics(first).notifications == 2
    assert await _listener_pids(pg_schema) == {pid}, "still the one session"


async def test_workers_on_two_storages_take_their_own_queues_pushed_elsewhere(
    pair: tuple[PostgresStorage, PostgresStorage], pg_schema: str
) -> None:
    first, second = pair
    seen: dict[str, list[object]] = {"a": [], "b": []}
    done = {"a": trio.Event(), "b": trio.Event()}

    def handler_of(queue: str) -> Callable[[str, WorkerContext], object]:
        async def handler(item: str, ctx: WorkerContext) -> None:
            seen[queue].append(item)
            done[queue].set()

        return handler

    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            for storage, queue in ((first, "a"), (second, "b")):
                worker = WorkerBuilder(f"on-{queue}").backend(storage).build(handler_of(queue))
                nursery.start_soon(worker.run)
            await trio.testing.wait_all_tasks_blocked()
            await trio.to_thread.run_sync(_push_elsewhere, pg_schema, "a", "a1")
            await trio.to_thread.run_sync(_push_elsewhere, pg_schema, "b", "b1")
            await done["a"].wait()
            await done["b"].wait()
            nursery.cancel_scope.cancel()
    assert seen == {"a": ["a1"], "b": ["b1"]}
    assert len(await _listener_pids(pg_schema)) == 1


async def test_closing_one_storage_keeps_the_others_wakeups_and_frees_its_locks(
    pair: tuple[PostgresStorage, PostgresStorage], pg_schema: str
) -> None:
    first, second = pair
    (pid,) = await _until_server(pg_schema, lambda pids: len(pids) == 1)
    await first._connections.hold_owner("run-of-a")
    await second._connections.hold_owner("run-of-b")
    assert await _owner_locked(first, "run-of-a", pid)
    assert _statistics(second).owners == 2
    await first.aclose()
    assert first._connections.listener_statistics() is None
    stats = _statistics(second)
    assert (stats.subscribers, stats.owners, stats.backend_pid) == (1, 1, pid)
    with trio.fail_after(BOUND):
        while await _owner_locked(first, "run-of-a", pid):
            await trio.sleep(0.02)  # released by a task of the listener, at once
    assert await _owner_locked(second, "run-of-b", pid), "the other storage's lock stays"
    waiters = _Waiters()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiters.wait, second, "b")
        await trio.testing.wait_all_tasks_blocked()
        await trio.to_thread.run_sync(_push_elsewhere, pg_schema, "b", "still heard")
        await _until(lambda: waiters.woken == ["b"], "b woken after a closed")
    assert await _listener_pids(pg_schema) == {pid}
    await second.aclose()
    await _until_server(pg_schema, lambda pids: not pids)  # the last one closed it


async def test_terminated_listener_reconnects_relocks_and_wakes_again(
    pair: tuple[PostgresStorage, PostgresStorage], pg_schema: str
) -> None:
    first, second = pair
    (old,) = await _until_server(pg_schema, lambda pids: len(pids) == 1)
    await first._connections.hold_owner("run-of-a")
    await _admin("SELECT pg_terminate_backend($1::int)", str(old))
    await _until(
        lambda: _statistics(first).connects == 2 and _statistics(first).listening,
        "the listener reconnected",
    )
    (new,) = await _until_server(pg_schema, lambda pids: len(pids) == 1 and old not in pids)
    assert _statistics(second).backend_pid == new
    assert await _owner_locked(first, "run-of-a", new), "the liveness lock was taken again"
    waiters = _Waiters()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiters.wait, first, "a")
        nursery.start_soon(waiters.wait, second, "b")
        await trio.testing.wait_all_tasks_blocked()
        await trio.to_thread.run_sync(_push_elsewhere, pg_schema, "a", "after")
        await trio.to_thread.run_sync(_push_elsewhere, pg_schema, "b", "after")
        await _until(lambda: sorted(waiters.woken) == ["a", "b"], "both woken again")


def test_each_trio_run_has_its_own_listener(pg_schema: str) -> None:
    """Storages in two trio runs (threads) of one process: one listener per run."""
    both_listening = threading.Barrier(2, timeout=BOUND)
    stats: list[ListenerStatistics] = []
    pids: list[set[int]] = []

    def run() -> None:
        async def main() -> None:
            async with PostgresStorage(DSN, schema=pg_schema, poll=POLL) as storage:
                stats.append(_statistics(storage))
                await trio.to_thread.run_sync(both_listening.wait)
                pids.append(await _listener_pids(pg_schema))
                await trio.to_thread.run_sync(both_listening.wait)

        trio.run(main)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND * 2)
    assert len(stats) == 2 and all(s.subscribers == 1 for s in stats), stats
    assert {s.backend_pid for s in stats} == pids[0] == pids[1], "two sessions, one per run"
    assert len(pids[0]) == 2


class _RunInThread:
    """A trio run on a thread of its own holding ``storage`` open until :meth:`end`."""

    def __init__(self, storage: PostgresStorage) -> None:
        self.storage = storage
        self.opened = threading.Event()
        self._end = threading.Event()
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main)
        self._thread.start()

    def _main(self) -> None:
        async def main() -> None:
            await self.storage.open()
            self.opened.set()
            await trio.to_thread.run_sync(self._end.wait)

        try:
            trio.run(main)
        except BaseException as error:  # reported by end()
            self.failure = error
        finally:
            self.opened.set()

    def end(self) -> None:
        self._end.set()
        self._thread.join(BOUND)
        assert not self._thread.is_alive()
        if self.failure is not None:
            raise self.failure


def _until_pids(schema: str, wanted: Callable[[set[int]], bool]) -> set[int]:
    return trio.run(_until_server, schema, wanted)


def test_a_storage_closed_from_a_plain_thread_leaves_through_the_run(pg_schema: str) -> None:
    """``close()`` from outside the listener's run hands the leaving to that run."""
    storage = PostgresStorage(DSN, schema=pg_schema, poll=POLL)
    run = _RunInThread(storage)
    try:
        assert run.opened.wait(BOUND)
        _until_pids(pg_schema, lambda pids: len(pids) == 1)
        storage.close()  # this thread runs no trio
        _until_pids(pg_schema, lambda pids: not pids)  # the last subscriber left
    finally:
        run.end()


def test_a_storage_used_from_another_run_listens_in_that_run(pg_schema: str) -> None:
    """Wake-ups come from the run that waits: a storage opened in one run and then
    used in another (the first still alive) joins the second run's listener."""
    storage = PostgresStorage(DSN, schema=pg_schema, queue="a", poll=POLL)
    run = _RunInThread(storage)
    try:
        assert run.opened.wait(BOUND)
        (first,) = _until_pids(pg_schema, lambda pids: len(pids) == 1)

        async def here() -> None:
            listener = storage._connections.start_listener()
            assert listener is not None and listener.of_this_run()
            with trio.fail_after(BOUND):
                await listener.wait_listening()
            # The first run's listener lost its only subscriber: only this run's listens.
            (second,) = await _until_server(
                pg_schema, lambda pids: len(pids) == 1 and first not in pids
            )
            assert _statistics(storage).backend_pid == second
            waiters = _Waiters()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiters.wait, storage, "a")
                await trio.testing.wait_all_tasks_blocked()
                await trio.to_thread.run_sync(_push_elsewhere, pg_schema, "a", "here")
                await _until(lambda: waiters.woken == ["a"], "woken in this run")

        trio.run(here)
    finally:
        storage.close()
        run.end()
    _until_pids(pg_schema, lambda pids: not pids)
