"""taskiq: ``InMemoryBroker`` with its defaults.

``await task.kiq(args)`` serializes a message and hands it to the broker's
receiver, which runs the task in a new asyncio task (there is no separate
consumer: the in-memory broker executes what it is sent).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ._probe import Probe

__all__ = ["latency", "throughput"]

now = time.perf_counter


def throughput(n: int, probe: Probe) -> None:
    asyncio.run(_throughput(n, probe))


async def _throughput(n: int, probe: Probe) -> None:
    from taskiq import InMemoryBroker

    broker = InMemoryBroker()
    count = 0
    all_done = asyncio.Event()

    @broker.task
    async def handler(_item: int) -> None:
        nonlocal count
        count += 1
        if count == n:
            probe.finish()
            all_done.set()

    await broker.startup()
    try:
        probe.start()
        kiq = handler.kiq
        for i in range(n):
            await kiq(i)
        probe.pushed()
        await all_done.wait()
        await broker.wait_all()
    finally:
        await broker.shutdown()


def latency(samples: int) -> list[float]:
    return asyncio.run(_latency(samples))


async def _latency(samples: int) -> list[float]:
    from taskiq import InMemoryBroker

    broker = InMemoryBroker()
    measured: list[float] = []
    handled = asyncio.Event()

    @broker.task
    async def handler(pushed_at: float) -> None:
        measured.append(now() - pushed_at)
        handled.set()

    kiq: Any = handler.kiq
    await broker.startup()
    try:
        for _ in range(samples):
            for _ in range(3):
                await asyncio.sleep(0)
            handled.clear()
            await kiq(now())
            await handled.wait()
    finally:
        await broker.wait_all()
        await broker.shutdown()
    return measured
