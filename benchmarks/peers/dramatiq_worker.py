"""dramatiq: ``StubBroker`` (its in-memory broker) and a ``Worker``.

``actor.send(args)`` encodes a message (JSON) and enqueues it; the worker's
consumer thread takes it from the queue and hands it to a worker thread, which
runs the actor through the default middleware (age limit, time limit, retries,
callbacks, pipelines, shutdown notifications). The worker has its default 8
threads: with 1 it prefetches only 2 messages and ran at half the rate here.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ._probe import Probe

__all__ = ["latency", "throughput"]

now = time.perf_counter
WORKER_THREADS = 8  # dramatiq's default

logging.getLogger("dramatiq").setLevel(logging.WARNING)


def _broker() -> Any:
    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    return broker


def throughput(n: int, probe: Probe) -> None:
    import dramatiq

    broker = _broker()
    count = 0
    lock = threading.Lock()

    @dramatiq.actor(broker=broker)
    def handler(_item: int) -> None:
        nonlocal count
        with lock:  # the counter is shared by the worker threads
            count += 1
            last = count == n
        if last:
            probe.finish()

    worker = dramatiq.Worker(broker, worker_threads=WORKER_THREADS)
    probe.start()
    send = handler.send
    for i in range(n):
        send(i)
    probe.pushed()
    worker.start()
    try:
        if not probe.wait(timeout=600):
            raise RuntimeError(f"dramatiq handled {count} of {n} tasks in 600 s")
    finally:
        worker.stop()
        broker.close()


def latency(samples: int) -> list[float]:
    import dramatiq

    broker = _broker()
    measured: list[float] = []
    handled = threading.Event()

    @dramatiq.actor(broker=broker)
    def handler(pushed_at: float) -> None:
        measured.append(now() - pushed_at)
        handled.set()

    worker = dramatiq.Worker(broker, worker_threads=WORKER_THREADS)
    worker.start()
    try:
        for _ in range(samples):
            time.sleep(0.001)  # the worker finishes its item and waits on the queue
            handled.clear()
            handler.send(now())
            if not handled.wait(timeout=60):
                raise RuntimeError("dramatiq did not run a task within 60 s")
    finally:
        worker.stop()
        broker.close()
    return measured
