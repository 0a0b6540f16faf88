"""The yardsticks: a raw trio memory channel and ``asyncio.Queue``.

No framework at all: a queue, one consumer loop, an ``async def`` handler.
"""

from __future__ import annotations

import asyncio
import math
import time

import trio

from ._probe import Probe

__all__ = ["asyncio_latency", "asyncio_throughput", "trio_latency", "trio_throughput"]

now = time.perf_counter


def trio_throughput(n: int, probe: Probe) -> None:
    trio.run(_trio_throughput, n, probe)


async def _trio_throughput(n: int, probe: Probe) -> None:
    send, receive = trio.open_memory_channel[int](math.inf)
    count = 0

    async def handler(_item: int) -> None:
        nonlocal count
        count += 1
        if count == n:
            probe.finish()

    probe.start()
    send_nowait = send.send_nowait
    for i in range(n):
        send_nowait(i)
    probe.pushed()
    send.close()
    async for item in receive:
        await handler(item)


def trio_latency(samples: int) -> list[float]:
    return trio.run(_trio_latency, samples)


async def let_consumer_park() -> None:
    """A few scheduler turns: the consumer finishes its item and parks again."""
    for _ in range(3):
        await trio.sleep(0)


async def _trio_latency(samples: int) -> list[float]:
    send, receive = trio.open_memory_channel[float](math.inf)
    latencies: list[float] = []
    handled = trio.Event()

    async def handler(pushed_at: float) -> None:
        latencies.append(now() - pushed_at)
        handled.set()

    async def consumer() -> None:
        async for pushed_at in receive:
            await handler(pushed_at)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        for _ in range(samples):
            await let_consumer_park()
            handled = trio.Event()
            send.send_nowait(now())
            await handled.wait()
        send.close()
    return latencies


def asyncio_throughput(n: int, probe: Probe) -> None:
    asyncio.run(_asyncio_throughput(n, probe))


async def _asyncio_throughput(n: int, probe: Probe) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    count = 0

    async def handler(_item: int) -> None:
        nonlocal count
        count += 1
        if count == n:
            probe.finish()

    probe.start()
    put_nowait = queue.put_nowait
    for i in range(n):
        put_nowait(i)
    probe.pushed()
    get = queue.get
    for _ in range(n):
        await handler(await get())


def asyncio_latency(samples: int) -> list[float]:
    return asyncio.run(_asyncio_latency(samples))


async def _asyncio_latency(samples: int) -> list[float]:
    queue: asyncio.Queue[float] = asyncio.Queue()
    latencies: list[float] = []
    handled = asyncio.Event()

    async def handler(pushed_at: float) -> None:
        latencies.append(now() - pushed_at)
        handled.set()

    async def consumer() -> None:
        while True:
            await handler(await queue.get())

    task = asyncio.create_task(consumer())
    for _ in range(samples):
        for _ in range(3):
            await asyncio.sleep(0)
        handled.clear()
        queue.put_nowait(now())
        await handled.wait()
    task.cancel()
    return latencies
