"""JsonStorage: push_bulk of 10k tasks drained by a worker, and one durable ack.

Every suite runs on both implementations (``cython``, the compiled core that
ships, and ``python``, the pure-Python twin), chosen through
``benchmarks._support.load_pyapalis``. Files go to a new temporary directory
per timed call (``setup``/``teardown``), so each call starts from an empty
journal. fsync cost belongs to the disk: compare results of one machine.

``python -m benchmarks.json_vs_sqlite`` runs the same workloads side by side
with a plain sqlite3 loop as a yardstick.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, ClassVar

import trio

from ._support import IMPLEMENTATIONS, load_pyapalis
from .json_vs_sqlite import durable_acks, push_and_drain


class JsonStoragePushDrain:
    """``push_bulk(range(10_000))``, then a worker drains them; at concurrency 1 and 100.

    At concurrency 1 every task waits for its own fsync; at 100 concurrent
    acks share one (group commit). Tasks/s = 10,000 / reported time.
    """

    params: ClassVar[list[list[Any]]] = [IMPLEMENTATIONS, [1, 100]]
    param_names: ClassVar[list[str]] = ["implementation", "concurrency"]
    n = 10_000
    number = 1
    repeat = (2, 5, 60.0)
    warmup_time = 0.0
    timeout = 600.0

    def setup(self, implementation: str, concurrency: int) -> None:
        load_pyapalis(implementation)
        self.directory = tempfile.mkdtemp(prefix="pyapalis-asv-")

    def teardown(self, implementation: str, concurrency: int) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def time_push_bulk_and_drain(self, implementation: str, concurrency: int) -> None:
        """First push to the last durable ack."""
        path = os.path.join(self.directory, "tasks.jsonl")
        trio.run(push_and_drain, path, self.n, concurrency)


class JsonStorageDurableAck:
    """One ``ack(Done)`` awaited alone until it is on disk (one write, one fsync)."""

    params: ClassVar[list[str]] = IMPLEMENTATIONS
    param_names: ClassVar[list[str]] = ["implementation"]
    acks = 100
    number = 1
    repeat = (3, 10, 30.0)
    warmup_time = 0.0
    timeout = 300.0
    unit = "microseconds"

    def setup(self, implementation: str) -> None:
        load_pyapalis(implementation)
        self.directory = tempfile.mkdtemp(prefix="pyapalis-asv-")

    def teardown(self, implementation: str) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def track_durable_ack(self, implementation: str) -> float:
        """Median microseconds of one durable ack (100 samples, taken one at a time)."""
        path = os.path.join(self.directory, "acks.jsonl")
        samples = sorted(trio.run(durable_acks, path, self.acks))
        return samples[len(samples) // 2] * 1e6
