"""Task names on RedisStorage: a named task's member is also in ``ready:<name>``, and a
view's claim merges its names' sets in claim order; unqueueing keeps both in step.

The mixed-version deploy itself (two pools on one queue) is the shared
conformance case (tests/test_redis_conformance.py::TestRedisStorageShared).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _redis_support import REDIS_URL, drop_namespace, needs_redis, new_namespace

from pyapalis import RedisStorage, Status, TaskBuilder
from pyapalis.backends import FiltersTaskNames

pytestmark = needs_redis


@pytest.fixture
async def storage() -> AsyncIterator[RedisStorage]:
    namespace = new_namespace()
    try:
        async with RedisStorage(REDIS_URL, namespace=namespace, lease=10.0) as opened:
            yield opened
    finally:
        await drop_namespace(REDIS_URL, namespace)


def _typed(name: str, priority: int = 0) -> TaskBuilder:
    return TaskBuilder({"task_name": name, "payload": {}}).priority(priority)


async def test_a_view_claims_its_names_in_claim_order_and_a_plain_handle_takes_the_rest(
    storage: RedisStorage,
) -> None:
    assert isinstance(storage, FiltersTaskNames)
    with pytest.raises(ValueError, match=r"RedisStorage\.only_task_names: at least one"):
        storage.only_task_names(())
    plain = await storage.push("plain")
    gamma = await storage.push_task(_typed("gamma", priority=9).build())
    beta = await storage.push_task(_typed("beta").build())
    [alpha] = await storage.push_bulk([{"task_name": "alpha", "payload": {}}])
    urgent = await storage.push_task(_typed("beta", priority=5).build())
    view = storage.only_task_names({"alpha", "beta"})
    assert view.task_names == frozenset({"alpha", "beta"}) and storage.task_names is None
    assert repr(view).endswith("task_names=['alpha', 'beta'])")
    taken = []
    for _ in range(3):
        task = await view.take()
        taken.append(task.parts.task_id)
        await view.ack(task, Status.Done, None, None)
    # Across both names: priority first, then push order; gamma and plain are not theirs.
    assert taken == [urgent, beta, alpha]
    rest = [await storage.take(), await storage.take()]
    assert [task.parts.task_id for task in rest] == [gamma, plain]
    for task in rest:
        await storage.ack(task, Status.Done, None, None)
    await view.aclose()


async def test_a_killed_or_plainly_claimed_named_task_leaves_its_name_set_too(
    storage: RedisStorage,
) -> None:
    killed = await storage.push_task(_typed("alpha").build())
    taken_plainly = await storage.push_task(_typed("alpha").build())
    left = await storage.push_task(_typed("alpha").build())
    assert await storage.kill_by_id(killed)
    task = await storage.take()  # the unfiltered claim pops it from ready and ready:alpha
    assert task.parts.task_id == taken_plainly
    await storage.ack(task, Status.Done, None, None)
    view = storage.only_task_names(["alpha"])
    task = await view.take()
    assert task.parts.task_id == left
    await view.ack(task, Status.Done, None, None)
    assert view.take_nowait() is None
    await view.aclose()
