"""Idle push-to-handler latency, pyapalis against a raw trio channel, sample by sample.

    python benchmarks/idle_latency_paired.py [--rounds 10] [--samples 2000] [--warm-up 0]

``benchmarks.compare`` measures each contender in a process of its own, one
after the other, so a difference of a few hundred nanoseconds drowns in the
drift of a shared machine. Here one trio run holds both consumers, a channel
loop and a pyapalis worker (concurrency 1, a MemoryStorage), and the producer
alternates between them, one idle sample each in turn (which goes first
alternates too): both see the same machine at the same moments.

``--warm-up N`` first runs N tasks through the worker, so that its storage
holds its full record of finished tasks (``MemoryStorage(results=10_000)``)
before sampling: until then each task takes fresh memory, which shows in
the p99.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import trio

from pyapalis import MemoryStorage, WorkerBuilder

now = time.perf_counter


async def paired(samples: int, warm_up: int = 0) -> dict[str, list[float]]:
    """``samples`` latencies (seconds) of each consumer, taken alternately."""
    send, receive = trio.open_memory_channel[float](math.inf)
    storage = MemoryStorage()
    latencies: dict[str, list[float]] = {"trio channel": [], "pyapalis worker": []}
    handled = trio.Event()
    measuring = False

    async def channel_handler(pushed_at: float) -> None:
        latencies["trio channel"].append(now() - pushed_at)
        handled.set()

    async def worker_handler(pushed_at: float) -> None:
        if measuring:
            latencies["pyapalis worker"].append(now() - pushed_at)
            handled.set()

    async def channel_consumer() -> None:
        async for pushed_at in receive:
            await channel_handler(pushed_at)

    worker = WorkerBuilder("paired").backend(storage).build(worker_handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(channel_consumer)
        nursery.start_soon(worker.run)
        for _ in range(warm_up):
            storage.push_nowait(0.0)
        while len(storage):
            await trio.sleep(0)
        measuring = True
        pushes = (send.send_nowait, storage.push_nowait)
        for i in range(samples):
            for push in pushes if i % 2 else pushes[::-1]:
                for _ in range(3):  # the consumer finishes and parks again
                    await trio.sleep(0)
                handled = trio.Event()
                push(now())
                await handled.wait()
        send.close()
        worker.context.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="trio runs (10)")
    parser.add_argument("--samples", type=int, default=2_000, help="per consumer and run")
    parser.add_argument("--warm-up", type=int, default=0, help="tasks before sampling (0)")
    args = parser.parse_args()
    every: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, values in trio.run(paired, args.samples, args.warm_up).items():
            every.setdefault(name, []).extend(values)
    print(f"{args.rounds} x {args.samples} samples each, warm-up {args.warm_up}")
    print("consumer             p50 µs   p90 µs   p99 µs")
    for name, values in every.items():
        values.sort()
        p90, p99 = (values[int(len(values) * q)] * 1e6 for q in (0.9, 0.99))
        print(f"{name:<18}{statistics.median(values) * 1e6:9.2f}{p90:9.2f}{p99:9.2f}")
    channel, worker = (statistics.median(every[k]) for k in every)
    print(f"pyapalis p50 / channel p50: {worker / channel:.2f}")


if __name__ == "__main__":
    main()
