"""The background runtime: tasks pushed from plain threads into a worker on its own thread.

Each suite compares cross-thread pushes (``start_in_thread`` + ``runtime.push``
``runtime.submit`` or ``runtime.submit_batch``) with same-thread pushes (a trio task calling
``push_nowait``), measured the same way; the workloads live in
``benchmarks/runtime_latency.py``, which also prints them side by side
(``python benchmarks/runtime_latency.py``). Compiled core only.
"""

from __future__ import annotations

import statistics
from typing import Any, ClassVar

from .runtime_latency import (
    latency_other_thread,
    latency_same_thread,
    latency_trio_wake_floor,
    latency_wake_floor,
    percentile,
    submit_round_trip,
    throughput_same_thread,
    throughput_threads,
)


class RuntimeThroughput:
    """``tasks`` trivial tasks pushed while the worker consumes: first push to last call."""

    params: ClassVar[list[list[Any]]] = [
        ["same-thread", "push", "submit", "submit_batch"],
        [1, 2, 4],
    ]
    param_names: ClassVar[list[str]] = ["producer", "threads"]
    tasks = 100_000
    number = 1
    repeat = (3, 5, 30.0)
    warmup_time = 0.0
    timeout = 300.0

    def setup(self, producer: str, threads: int) -> None:
        if producer == "same-thread" and threads != 1:
            raise NotImplementedError  # asv skips: one trio task is one producer

    def track_tasks_per_second(self, producer: str, threads: int) -> float:
        """Sustained tasks per second."""
        if producer == "same-thread":
            return throughput_same_thread(self.tasks)
        return throughput_threads(self.tasks, threads, producer)

    track_tasks_per_second.unit = "tasks/s"  # type: ignore[attr-defined]


class RuntimeLatency:
    """One task at a time to an idle worker: push to handler start, in µs.

    ``same-thread``: a trio task pushes; ``other-thread``: a plain thread
    pushes through the runtime; ``submit``: ``runtime.submit(...).result()``
    round trip (push, handler, future resolved, caller woken); the two floors:
    a plain thread and a trio task woken through an eventfd, no pyapalis.
    """

    params: ClassVar[list[str]] = [
        "same-thread",
        "other-thread",
        "submit",
        "floor-thread",
        "floor-trio",
    ]
    param_names: ClassVar[list[str]] = ["path"]
    samples = 1_000
    number = 1
    repeat = 1
    timeout = 300.0

    def setup(self, path: str) -> None:
        measure = {
            "same-thread": latency_same_thread,
            "other-thread": latency_other_thread,
            "submit": submit_round_trip,
            "floor-thread": latency_wake_floor,
            "floor-trio": latency_trio_wake_floor,
        }[path]
        self.values = sorted(measure(self.samples))

    def track_p50(self, path: str) -> float:
        """Median latency, µs."""
        return statistics.median(self.values) * 1e6

    track_p50.unit = "us"  # type: ignore[attr-defined]

    def track_p99(self, path: str) -> float:
        """99th percentile latency, µs."""
        return percentile(self.values, 0.99) * 1e6

    track_p99.unit = "us"  # type: ignore[attr-defined]
