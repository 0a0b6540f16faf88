"""Cross-thread pushes into a background runtime against same-thread pushes, in one run.

    python benchmarks/runtime_latency.py [--samples 2000] [--tasks 200000]

Latency: one producer pushes a task to an idle worker and waits until the
handler has started, ``samples`` times; reported is push-to-handler-start
(p50, p99, in µs). *same thread*: a trio task pushes with ``push_nowait`` to a
worker in the same run. *other thread*: a plain thread pushes with
``runtime.push`` to a worker that ``start_in_thread`` runs. *submit round trip*:
``runtime.submit`` to ``future.result()`` returning in the producer thread.

Throughput: ``tasks`` tasks pushed while the worker consumes, from the first
push to the last handler call (a trivial handler). *same thread*: one trio task
pushes, yielding every 64 pushes. *k threads*: k plain threads push ``tasks/k``
each, fire-and-forget (``runtime.push``), or with ``runtime.submit`` (a future
per task, all resolved at the end).

Targets (issue 8): cross-thread p50 <= 50 µs; cross-thread throughput at least
half the same-thread throughput.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyapalis import MemoryStorage, WorkerBuilder
from pyapalis._implementation import IMPLEMENTATION
from pyapalis._runtime import start_in_thread

perf_counter = time.perf_counter


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


# -- latency -------------------------------------------------------------------


def latency_same_thread(samples: int) -> list[float]:
    """Push from a trio task to a parked worker in the same run."""
    results: list[float] = []

    async def main() -> None:
        storage = MemoryStorage()
        started = [0.0]
        handled = trio.Event()

        async def handler(_item: int) -> None:
            started[0] = perf_counter()
            handled.set()

        worker = WorkerBuilder("latency").backend(storage).build(handler)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            for _ in range(samples):
                while not storage.statistics().consumers_waiting:
                    await trio.sleep(0)
                handled = trio.Event()
                t0 = perf_counter()
                storage.push_nowait(0)
                await handled.wait()
                results.append(started[0] - t0)
            worker.context.stop()

    trio.run(main)
    return results


def latency_other_thread(samples: int) -> list[float]:
    """Push from this (plain) thread to a parked worker on the runtime's thread."""
    storage = MemoryStorage()
    started = [0.0]
    handled = threading.Event()

    def handler(_item: int) -> None:
        started[0] = perf_counter()
        handled.set()

    worker = WorkerBuilder("latency").backend(storage).build(handler)
    results: list[float] = []
    with start_in_thread(worker) as runtime:
        for _ in range(samples):
            # Measure the idle path: wait until the consumer has parked.
            while not storage.statistics().consumers_waiting:
                time.sleep(20e-6)
            handled.clear()
            t0 = perf_counter()
            runtime.push(storage, 0)
            handled.wait()
            results.append(started[0] - t0)
    return results


def submit_round_trip(samples: int) -> list[float]:
    """``submit`` to ``future.result()`` returning, from a plain thread."""
    storage = MemoryStorage()

    def handler(item: int) -> int:
        return item

    worker = WorkerBuilder("latency").backend(storage).build(handler)
    results: list[float] = []
    with start_in_thread(worker) as runtime:
        for i in range(samples):
            while not storage.statistics().consumers_waiting:
                time.sleep(20e-6)
            t0 = perf_counter()
            runtime.submit(storage, i).result()
            results.append(perf_counter() - t0)
    return results


# -- throughput ----------------------------------------------------------------


def throughput_same_thread(tasks: int) -> float:
    """Tasks per second, pushed by a trio task while the worker consumes."""
    elapsed = [0.0]

    async def main() -> None:
        storage = MemoryStorage()
        done = trio.Event()
        count = [0]

        def handler(_item: int) -> None:
            count[0] += 1
            if count[0] == tasks:
                done.set()

        worker = WorkerBuilder("throughput").backend(storage).build(handler)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await trio.sleep(0)
            push = storage.push_nowait
            t0 = perf_counter()
            for i in range(tasks):
                push(i)
                if not i & 63:
                    await trio.lowlevel.checkpoint()
            await done.wait()
            elapsed[0] = perf_counter() - t0
            worker.context.stop()

    trio.run(main)
    return tasks / elapsed[0]


def throughput_threads(tasks: int, producers: int, *, submit: bool) -> float:
    """Tasks per second, pushed by ``producers`` plain threads."""
    storage = MemoryStorage()
    done = threading.Event()
    count = [0]

    def handler(_item: int) -> None:
        count[0] += 1
        if count[0] == tasks:
            done.set()

    worker = WorkerBuilder("throughput").backend(storage).build(handler)
    share = tasks // producers
    assert share * producers == tasks
    gate = threading.Barrier(producers + 1)

    with start_in_thread(worker) as runtime:

        def produce() -> None:
            push: Callable[..., object] = runtime.submit if submit else runtime.push
            gate.wait()
            if submit:
                futures = [runtime.submit(storage, i) for i in range(share)]
                # One worker loop runs tasks in push order: the last future
                # resolves last (waking on every future would measure thread
                # wake-ups, not the runtime).
                futures[-1].result()
                assert all(future.done() for future in futures)
            else:
                for i in range(share):
                    push(storage, i)

        threads = [threading.Thread(target=produce) for _ in range(producers)]
        for thread in threads:
            thread.start()
        gate.wait()
        t0 = perf_counter()
        done.wait()
        elapsed = perf_counter() - t0
        for thread in threads:
            thread.join()
    return tasks / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=200_000)
    options = parser.parse_args()
    samples, tasks = options.samples, options.tasks
    print(f"pyapalis core: {IMPLEMENTATION}; Python {sys.version.split()[0]}")
    print(f"\nlatency, push to handler start ({samples} samples)    p50 µs    p99 µs")
    rows: list[tuple[str, list[float]]] = [
        ("same thread (trio task, push_nowait)", latency_same_thread(samples)),
        ("other thread (runtime.push)", latency_other_thread(samples)),
        ("submit -> future.result() round trip", submit_round_trip(samples)),
    ]
    for label, values in rows:
        values.sort()
        print(
            f"  {label:<46}{percentile(values, 0.5) * 1e6:8.1f}"
            f"{percentile(values, 0.99) * 1e6:10.1f}"
        )

    print(f"\nthroughput ({tasks} tasks)                          tasks/s   vs same thread")
    same = statistics.median(throughput_same_thread(tasks) for _ in range(3))
    print(f"  {'same thread (trio task, push_nowait)':<46}{same:10,.0f}{1.0:10.2f}")
    for submit in (False, True):
        for producers in (1, 2, 3, 4):
            rate = statistics.median(
                throughput_threads(tasks - tasks % producers, producers, submit=submit)
                for _ in range(3)
            )
            how = "submit + wait" if submit else "push"
            label = f"{producers} thread{'s' if producers > 1 else ''} ({how})"
            print(f"  {label:<46}{rate:10,.0f}{rate / same:10.2f}")


if __name__ == "__main__":
    main()
