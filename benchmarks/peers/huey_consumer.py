"""huey: ``MemoryHuey`` and its consumer (one worker thread).

Calling a ``@huey.task()`` function enqueues a pickled message; the consumer's
worker thread dequeues and executes it. When the queue is empty the worker
polls again after ``initial_delay`` (0.1 s), backing off by 1.15x up to 10 s:
huey's idle latency is a polling interval, by design.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ._probe import Probe

__all__ = ["latency", "throughput"]

now = time.perf_counter

# The consumer logs each start and stop at INFO; keep the benchmark's output clean.
logging.getLogger("huey").setLevel(logging.WARNING)


def _consumer(huey: Any) -> Any:
    # periodic=False: no periodic tasks exist; its scheduler thread would only wake idly.
    return huey.create_consumer(workers=1, worker_type="thread", periodic=False)


def throughput(n: int, probe: Probe) -> None:
    from huey import MemoryHuey

    huey = MemoryHuey("bench")
    count = 0

    @huey.task()
    def handler(_item: int) -> None:
        nonlocal count
        count += 1  # one worker thread: no race
        if count == n:
            probe.finish()

    consumer = _consumer(huey)
    probe.start()
    for i in range(n):
        handler(i)
    probe.pushed()
    consumer.start()
    try:
        if not probe.wait(timeout=600):
            raise RuntimeError(f"huey handled {count} of {n} tasks in 600 s")
    finally:
        consumer.stop(graceful=True)


def latency(samples: int) -> list[float]:
    import threading

    from huey import MemoryHuey

    huey = MemoryHuey("latency")
    measured: list[float] = []
    handled = threading.Event()

    @huey.task()
    def handler(pushed_at: float) -> None:
        measured.append(now() - pushed_at)
        handled.set()

    consumer = _consumer(huey)
    consumer.start()
    try:
        for _ in range(samples):
            time.sleep(0.001)  # the worker finishes its item and polls the empty queue
            handled.clear()
            handler(now())
            if not handled.wait(timeout=60):
                raise RuntimeError("huey did not run a task within 60 s")
    finally:
        consumer.stop(graceful=True)
    return measured
