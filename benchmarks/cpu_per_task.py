"""CPU time per task: pyapalis's hot paths against a raw trio channel, in one process.

    python -m benchmarks.cpu_per_task [--n 200000] [--repeats 3]

``benchmarks.compare`` reports wall-clock throughput, which on a shared
machine swings with whatever else runs (the same code measured 3x to 11x the
channel within minutes while four engineers shared two cores). Process CPU
time barely moves with the load, so a change of a few hundred nanoseconds per
task shows here. Each row drains ``n`` tasks (best of ``repeats``):

* ``trio channel``: a consumer receiving from a memory channel (the baseline);
* ``args only`` / ``ctx: WorkerContext``: a worker at concurrency 1 draining a
  MemoryStorage filled with ``push_bulk`` (the fused take/invoke/ack path);
* ``push_nowait ping-pong``: the idle path, a producer pushing one task at a
  time with ``push_nowait`` and waiting until the handler has run (the
  hand-off to a parked consumer, its wake-up and the ack), against the same
  ping-pong over a channel.

Ratios are pyapalis CPU per task over the channel's, so lower is cheaper.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Awaitable, Callable

import trio

from pyapalis import MemoryStorage, WorkerBuilder, WorkerContext

Measure = Callable[[int], Awaitable[float]]


async def channel_drain(n: int) -> float:
    """CPU seconds to receive ``n`` items already in a channel."""
    send, receive = trio.open_memory_channel[int](math.inf)
    for item in range(n):
        send.send_nowait(item)
    start = time.process_time()
    for _ in range(n):
        await receive.receive()
    return time.process_time() - start


async def _worker_drain(n: int, with_context: bool) -> float:
    storage = MemoryStorage()
    await storage.push_bulk(range(n))
    done = 0
    stop = trio.Event()

    async def args_only(item: int) -> None:
        nonlocal done
        done += 1
        if done == n:
            stop.set()

    async def with_ctx(item: int, ctx: WorkerContext) -> None:
        nonlocal done
        done += 1
        if done == n:
            ctx.stop()

    worker = WorkerBuilder("cpu").backend(storage).build(with_ctx if with_context else args_only)
    start = time.process_time()
    if with_context:
        await worker.run()
    else:
        await worker.run_until(stop.wait)
    return time.process_time() - start


async def worker_drain(n: int) -> float:
    """CPU seconds for a worker to run ``n`` queued tasks of an args-only handler."""
    return await _worker_drain(n, with_context=False)


async def worker_drain_with_context(n: int) -> float:
    """The same with a handler that also takes ``ctx: WorkerContext``."""
    return await _worker_drain(n, with_context=True)


async def channel_ping_pong(n: int) -> float:
    """CPU seconds for ``n`` round trips: send one item, wait until it was handled."""
    send, receive = trio.open_memory_channel[trio.Event](0)

    async def consume() -> None:
        async for handled in receive:
            handled.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        start = time.process_time()
        for _ in range(n):
            handled = trio.Event()
            await send.send(handled)
            await handled.wait()
        spent = time.process_time() - start
        await send.aclose()
    return spent


async def worker_ping_pong(n: int) -> float:
    """CPU seconds for ``n`` round trips through an idle worker: ``push_nowait``
    hands the task to the parked consumer loop, the handler signals back."""
    storage = MemoryStorage()
    signal = [trio.Event()]

    async def handler(item: int) -> None:
        signal[0].set()

    worker = WorkerBuilder("cpu").backend(storage).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        signal[0] = trio.Event()
        storage.push_nowait(-1)  # the worker is up and parked once this ran
        await signal[0].wait()
        start = time.process_time()
        for item in range(n):
            signal[0] = trio.Event()
            storage.push_nowait(item)
            await signal[0].wait()
        spent = time.process_time() - start
        worker.context.stop()
    return spent


ROWS: list[tuple[str, Measure, Measure]] = [
    ("args only", channel_drain, worker_drain),
    ("ctx: WorkerContext", channel_drain, worker_drain_with_context),
    ("push_nowait ping-pong", channel_ping_pong, worker_ping_pong),
]
"""``(label, baseline, pyapalis)``: each measure returns CPU seconds for ``n`` tasks."""


def best_per_task(baseline: Measure, measure: Measure, n: int, repeats: int) -> tuple[float, float]:
    """The least CPU seconds per task of each over ``repeats`` runs, each in a fresh
    trio run, the two taken in turn so both see the same moments of the machine."""
    base: list[float] = []
    ours: list[float] = []
    for _ in range(repeats):
        base.append(trio.run(baseline, n))
        ours.append(trio.run(measure, n))
    return min(base) / n, min(ours) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="tasks per run (200,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row, best kept (3)")
    options = parser.parse_args()
    print(f"{'row':24} {'channel µs':>11} {'pyapalis µs':>12} {'ratio':>6}")
    for label, baseline, measure in ROWS:
        base, ours = best_per_task(baseline, measure, options.n, options.repeats)
        print(f"{label:24} {base * 1e6:11.3f} {ours * 1e6:12.3f} {ours / base:6.2f}")


if __name__ == "__main__":
    main()
