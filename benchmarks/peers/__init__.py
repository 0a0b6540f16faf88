"""The contenders of ``python -m benchmarks.compare``: one workload, many queues.

Every contender runs the same two workloads in the process that calls it:

* **throughput** (:attr:`Contender.throughput`): ``n`` small ints are pushed
  up front through the framework's ordinary single-item API, then its consumer
  runs a trivial handler (it increments a counter) on each. The clock runs from
  the first push to the handler call that completes the ``n``-th task, so the
  figure is the cost of a task's whole trip: push, queue, dispatch, handler.
* **idle latency** (:attr:`Contender.latency`): with the consumer idle, one
  task carrying ``perf_counter()`` is pushed; the handler records how long it
  took to get there. Repeated, one task at a time.

A contender whose framework is not installed is reported as skipped (see
:func:`missing_requirements`); nothing here imports a peer at module level, so
asv and the tests can import this package without the ``bench`` extra.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import (
    channels,
    dramatiq_worker,
    huey_consumer,
    pyapalis_shapes,
    pyapalis_worker,
    taskiq_broker,
)
from ._probe import Probe, Timing

__all__ = [
    "CONTENDERS",
    "Contender",
    "Probe",
    "Timing",
    "by_key",
    "missing_requirements",
    "version_of",
]


@dataclass(frozen=True)
class Contender:
    """One queue in the comparison and how to drive it."""

    key: str
    """Short name for ``--only`` (``trio``, ``pyapalis-c1``, ``huey``...)."""
    name: str
    """Name in the table and the chart."""
    setup: str
    """How it is configured, printed with the results."""
    throughput: Callable[[int, Probe], None]
    """Push ``n`` tasks up front, handle them all; calls the probe's marks."""
    latency: Callable[[int], list[float]]
    """``samples`` idle push-to-handler latencies, in seconds."""
    requires: tuple[str, ...] = ()
    """Distributions that must be installed (their import names)."""
    max_n: int | None = None
    """A cap on ``n`` for slow peers (tasks/s is what is compared)."""
    max_latency_samples: int | None = None
    """A cap on latency samples for consumers that poll (each sample waits a poll)."""


CONTENDERS: tuple[Contender, ...] = (
    Contender(
        key="trio",
        name="trio memory channel",
        setup="open_memory_channel(inf); send_nowait each item; async for + await handler",
        throughput=channels.trio_throughput,
        latency=channels.trio_latency,
    ),
    Contender(
        key="asyncio",
        name="asyncio.Queue",
        setup="put_nowait each item; await get() + await handler (asyncio default loop)",
        throughput=channels.asyncio_throughput,
        latency=channels.asyncio_latency,
    ),
    Contender(
        key="pyapalis-c1",
        name="pyapalis c=1",
        setup="MemoryStorage.push_nowait each item; a worker with concurrency 1",
        throughput=pyapalis_worker.throughput_c1,
        latency=pyapalis_worker.latency,
    ),
    Contender(
        key="pyapalis-c100",
        name="pyapalis c=100",
        setup="as c=1 with .concurrency(100): 100 consumer loops",
        throughput=pyapalis_worker.throughput_c100,
        latency=pyapalis_worker.latency_c100,
    ),
    Contender(
        key="pyapalis-bulk-c1",
        name="pyapalis c=1, push_bulk",
        setup="one MemoryStorage.push_bulk of all N items; a worker with concurrency 1",
        throughput=pyapalis_worker.bulk_throughput_c1,
        latency=pyapalis_worker.latency,
    ),
    Contender(
        key="pyapalis-bulk-c100",
        name="pyapalis c=100, push_bulk",
        setup="as c=1, push_bulk with .concurrency(100)",
        throughput=pyapalis_worker.bulk_throughput_c100,
        latency=pyapalis_worker.latency_c100,
    ),
    Contender(
        key="pyapalis-context-c1",
        name="pyapalis c=1, ctx: WorkerContext",
        setup="as c=1, the handler also takes ctx: WorkerContext (and stops through it)",
        throughput=pyapalis_shapes.throughput("context"),
        latency=pyapalis_shapes.latency("context"),
    ),
    Contender(
        key="pyapalis-attempt-c1",
        name="pyapalis c=1, Attempt + TaskId",
        setup="as c=1, the handler also takes attempt: Attempt and task_id: TaskId",
        throughput=pyapalis_shapes.throughput("attempt"),
        latency=pyapalis_shapes.latency("attempt"),
    ),
    Contender(
        key="pyapalis-data-c1",
        name="pyapalis c=1, Data[T]",
        setup="as c=1, the handler also takes a Data[Counter] given to WorkerBuilder.data()",
        throughput=pyapalis_shapes.throughput("data"),
        latency=pyapalis_shapes.latency("data"),
    ),
    Contender(
        key="huey",
        name="huey MemoryHuey",
        setup="MemoryHuey(); calling the @task enqueues; consumer with 1 worker thread "
        "(create_consumer defaults: polls an empty queue every 0.1 s, backing off)",
        throughput=huey_consumer.throughput,
        latency=huey_consumer.latency,
        requires=("huey",),
        max_n=50_000,
        max_latency_samples=50,
    ),
    Contender(
        key="taskiq",
        name="taskiq InMemoryBroker",
        setup="InMemoryBroker() defaults; await task.kiq(i) each item (runs it in an asyncio task)",
        throughput=taskiq_broker.throughput,
        latency=taskiq_broker.latency,
        requires=("taskiq",),
        max_n=50_000,
    ),
    Contender(
        key="dramatiq",
        name="dramatiq StubBroker",
        setup="StubBroker() with default middleware; actor.send(i) each item; "
        "Worker(broker) with its default 8 threads",
        throughput=dramatiq_worker.throughput,
        latency=dramatiq_worker.latency,
        requires=("dramatiq",),
        max_n=20_000,
    ),
)


def by_key(key: str) -> Contender:
    """The contender named ``key``; ValueError lists the known keys."""
    for contender in CONTENDERS:
        if contender.key == key:
            return contender
    known = ", ".join(c.key for c in CONTENDERS)
    raise ValueError(f"unknown contender {key!r}; known: {known}")


def missing_requirements(contender: Contender) -> list[str]:
    """The distributions ``contender`` needs that are not installed."""
    return [name for name in contender.requires if importlib.util.find_spec(name) is None]


def version_of(contender: Contender) -> str:
    """The version of the framework ``contender`` measures (Python's for the stdlib ones)."""
    distribution = {"trio": "trio", "asyncio": None}.get(contender.key, contender.key)
    if contender.key.startswith("pyapalis"):
        distribution = "pyapalis"
    if distribution is None:
        return f"Python {sys.version.split()[0]}"
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def peak_rss_bytes() -> int:
    """The process's peak resident set size since it started (any platform with getrusage)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak if sys.platform == "darwin" else peak * 1024


now = time.perf_counter
