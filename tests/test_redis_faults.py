"""Faults of the server itself, for real, on a private ``redis-server`` the test owns.

Redis restarted (it keeps nothing on disk here), a connection killed by the
server, scripts flushed: a running worker backs off, reconnects, loads its
scripts again and goes on with the tasks pushed afterwards; none is wedged
(apalis-redis workers stopped for good after a restart). Real time, bounded
by ``fail_after``; no sleeps decide anything: each step waits for an event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio
from _redis_support import PrivateRedis, needs_redis, private_redis

from pyapalis import RedisStorage, StorageError, WorkerBuilder

# coredis leaves the memory streams of a broken connection unclosed: pyproject's
# filterwarnings ignores exactly those ResourceWarnings.
pytestmark = needs_redis


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    with private_redis() as started:
        yield started


async def push_until_stored(storage: RedisStorage, item: Any) -> None:
    """Push, trying again while the server is away (a producer's retry loop)."""
    while True:
        try:
            await storage.push(item)
            return
        except StorageError:
            await trio.sleep(0.05)


async def run_with_fault(server: PrivateRedis, fault: Any) -> list[Any]:
    """A worker takes "before", the fault happens, then it must take "after"."""
    storage = RedisStorage(server.url, lease=3.0, poll=0.2, connect_timeout=1.0)
    seen: list[Any] = []
    arrived = {name: trio.Event() for name in ("before", "after")}

    async def handler(item: str) -> None:
        seen.append(item)
        arrived[item].set()

    worker = WorkerBuilder("survivor").backend(storage).concurrency(2).build(handler)

    async def scenario() -> None:
        await push_until_stored(storage, "before")
        await arrived["before"].wait()
        await fault(server, storage)
        await push_until_stored(storage, "after")
        await arrived["after"].wait()

    with trio.fail_after(30):
        await worker.run_until(scenario)
    await storage.aclose()
    return seen


async def test_a_worker_goes_on_after_redis_restarts(server: PrivateRedis) -> None:
    async def restart(server: PrivateRedis, storage: RedisStorage) -> None:
        await trio.to_thread.run_sync(server.restart)

    assert await run_with_fault(server, restart) == ["before", "after"]


async def test_a_worker_goes_on_after_its_connections_are_killed(server: PrivateRedis) -> None:
    import coredis

    async def kill(server: PrivateRedis, storage: RedisStorage) -> None:
        async with coredis.Redis.from_url(server.url) as admin:
            await admin.client_kill(skipme=True)

    assert await run_with_fault(server, kill) == ["before", "after"]


async def test_flushed_scripts_are_loaded_again(server: PrivateRedis) -> None:
    import coredis

    async def flush(server: PrivateRedis, storage: RedisStorage) -> None:
        async with coredis.Redis.from_url(server.url) as admin:
            await admin.script_flush()

    assert await run_with_fault(server, flush) == ["before", "after"]


async def test_a_worker_started_while_redis_is_down_starts_working_when_it_is_up(
    server: PrivateRedis,
) -> None:
    await trio.to_thread.run_sync(server.stop)
    storage = RedisStorage(server.url, lease=3.0, poll=0.2, connect_timeout=1.0)
    done = trio.Event()

    async def handler(item: str) -> None:
        done.set()

    worker = WorkerBuilder("patient").backend(storage).build(handler)

    async def scenario() -> None:
        await trio.sleep(0.3)  # the worker meets a dead server (and backs off)
        await trio.to_thread.run_sync(server.start)
        await push_until_stored(storage, "late")
        await done.wait()

    with trio.fail_after(30):
        await worker.run_until(scenario)
    await storage.aclose()
