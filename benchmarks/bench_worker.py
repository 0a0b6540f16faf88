"""End-to-end: MemoryStorage and a worker with a trivial handler.

Every suite runs on both implementations (``cython``, the compiled core that
ships, and ``python``, the pure-Python twin), chosen through
``benchmarks._support.load_pyapalis``. The handler is an ``async def`` that
counts and stops the worker at the ``n``-th task. ``number = 1``: asv runs
``setup()`` before every timed call, so each call starts from the same
fixture; per-task cost = reported time / n.

``python -m benchmarks.compare`` runs the same workload side by side with a
raw trio channel and with peer frameworks.
"""

from __future__ import annotations

import statistics
from typing import Any, ClassVar

import trio

from ._support import IMPLEMENTATIONS, load_pyapalis
from .peers._probe import Probe
from .peers.pyapalis_worker import drain, latencies, throughput


class _WorkerSuite:
    params: ClassVar[list[list[Any]]] = [IMPLEMENTATIONS, [10_000, 100_000, 1_000_000], [1, 100]]
    param_names: ClassVar[list[str]] = ["implementation", "n", "concurrency"]
    number = 1
    repeat = (3, 10, 30.0)
    warmup_time = 0.0
    timeout = 600.0


class WorkerDrain(_WorkerSuite):
    """A worker drains ``n`` tasks queued in ``setup()``, at concurrency 1 and 100."""

    def setup(self, implementation: str, n: int, concurrency: int) -> None:
        pyapalis = load_pyapalis(implementation)
        self.storage = pyapalis.MemoryStorage()
        push = self.storage.push_nowait
        for i in range(n):
            push(i)

    def time_drain(self, implementation: str, n: int, concurrency: int) -> None:
        """Worker start to the completion of the ``n``-th task."""
        trio.run(drain, self.storage, n, concurrency)


class WorkerThroughput(_WorkerSuite):
    """The whole trip of ``n`` tasks, as ``benchmarks.compare`` measures it.

    ``n`` ``push_nowait`` into a new storage, then a worker drains them.
    """

    def setup(self, implementation: str, n: int, concurrency: int) -> None:
        load_pyapalis(implementation)

    def time_push_and_drain(self, implementation: str, n: int, concurrency: int) -> None:
        """First push to the completion of the ``n``-th task."""
        trio.run(throughput, n, concurrency, Probe(n))

    def peakmem_push_and_drain(self, implementation: str, n: int, concurrency: int) -> None:
        """Peak RSS while ``n`` tasks are queued, then drained (interpreter included)."""
        trio.run(throughput, n, concurrency, Probe(n))


class IdleLatency:
    """Push one task to an idle worker; time until its handler starts.

    1,000 samples per call, one task at a time; the consumer parks between
    them. Reported in microseconds.
    """

    params: ClassVar[list[list[Any]]] = [IMPLEMENTATIONS, [1, 100]]
    param_names: ClassVar[list[str]] = ["implementation", "concurrency"]
    samples = 1_000
    number = 1
    repeat = 1

    def setup(self, implementation: str, concurrency: int) -> None:
        load_pyapalis(implementation)

    def _measure(self, concurrency: int) -> list[float]:
        return sorted(trio.run(latencies, self.samples, concurrency))

    def track_push_to_handler_p50(self, implementation: str, concurrency: int) -> float:
        """Median idle push-to-handler latency, µs."""
        return statistics.median(self._measure(concurrency)) * 1e6

    track_push_to_handler_p50.unit = "microseconds"  # type: ignore[attr-defined]

    def track_push_to_handler_p99(self, implementation: str, concurrency: int) -> float:
        """99th percentile idle push-to-handler latency, µs."""
        ordered = self._measure(concurrency)
        return ordered[int(len(ordered) * 0.99) - 1] * 1e6

    track_push_to_handler_p99.unit = "microseconds"  # type: ignore[attr-defined]

    def time_idle_round_trips(self, implementation: str, concurrency: int) -> None:
        """1,000 idle round trips: push, handler start, the consumer parks again."""
        trio.run(latencies, self.samples, concurrency)
