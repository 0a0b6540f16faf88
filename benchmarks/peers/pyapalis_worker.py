"""pyapalis: ``MemoryStorage`` and a worker, with a trivial handler.

pyapalis is imported when a function runs, not when this module loads: the asv
suites switch between the compiled core and the pure-Python twin by importing
pyapalis afresh (see ``benchmarks._support``), and these functions must use
whichever is current.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from ._probe import Probe

__all__ = [
    "bulk_throughput",
    "bulk_throughput_c1",
    "bulk_throughput_c100",
    "drain",
    "latency",
    "latency_c100",
    "throughput",
    "throughput_c1",
    "throughput_c100",
]

now = time.perf_counter


def throughput_c1(n: int, probe: Probe) -> None:
    trio.run(throughput, n, 1, probe)


def throughput_c100(n: int, probe: Probe) -> None:
    trio.run(throughput, n, 100, probe)


def bulk_throughput_c1(n: int, probe: Probe) -> None:
    trio.run(bulk_throughput, n, 1, probe)


def bulk_throughput_c100(n: int, probe: Probe) -> None:
    trio.run(bulk_throughput, n, 100, probe)


async def throughput(n: int, concurrency: int, probe: Probe, *, bulk: bool = False) -> None:
    """Push ``n`` ints one by one (``push_nowait``), or in one ``push_bulk``
    call with ``bulk``, then drain them with a worker."""
    from pyapalis import MemoryStorage

    storage = MemoryStorage()
    worker = _counting_worker(storage, n, concurrency, probe.finish)
    probe.start()
    if bulk:
        await storage.push_bulk(range(n))
    else:
        push = storage.push_nowait
        for i in range(n):
            push(i)
    probe.pushed()
    await worker.run()


async def bulk_throughput(n: int, concurrency: int, probe: Probe) -> None:
    """:func:`throughput` with one ``push_bulk`` call."""
    await throughput(n, concurrency, probe, bulk=True)


async def drain(storage: Any, n: int, concurrency: int) -> None:
    """Run a worker with a trivial handler on ``storage`` until it has handled ``n`` tasks."""
    await _counting_worker(storage, n, concurrency, None).run()


def _counting_worker(storage: Any, n: int, concurrency: int, on_last: Any) -> Any:
    """A worker whose handler counts, and stops the worker at the ``n``-th task."""
    from pyapalis import WorkerBuilder

    count = 0

    async def handler(_item: int) -> None:
        nonlocal count
        count += 1
        if count == n:
            if on_last is not None:
                on_last()
            worker.context.stop()

    worker = WorkerBuilder("bench").backend(storage).concurrency(concurrency).build(handler)
    return worker


def latency(samples: int) -> list[float]:
    return trio.run(latencies, samples, 1)


def latency_c100(samples: int) -> list[float]:
    return trio.run(latencies, samples, 100)


async def latencies(samples: int, concurrency: int = 1) -> list[float]:
    """Idle push-to-handler latencies of a MemoryStorage worker, in seconds."""
    from pyapalis import MemoryStorage, WorkerBuilder

    from .channels import let_consumer_park

    storage = MemoryStorage()
    measured: list[float] = []
    handled = trio.Event()

    async def handler(pushed_at: float) -> None:
        measured.append(now() - pushed_at)
        handled.set()

    worker = WorkerBuilder("latency").backend(storage).concurrency(concurrency).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        for _ in range(samples):
            await let_consumer_park()
            handled = trio.Event()
            storage.push_nowait(now())
            await handled.wait()
        worker.context.stop()
    return measured
