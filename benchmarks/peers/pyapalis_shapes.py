"""pyapalis by handler shape: the same worker, handlers that take more than the args.

Users inject parameters all the time (``ctx: WorkerContext``, ``attempt:
Attempt``, ``smtp: Data[SmtpPool]``), so each shape is a contender of its own
in ``benchmarks.compare``, measured like ``pyapalis-c1`` (``MemoryStorage``,
``push_nowait`` each item, a worker with concurrency 1) and compared with it:

* ``context``: ``handler(item, ctx: WorkerContext)``, stopping through ``ctx``;
* ``attempt``: ``handler(item, attempt: Attempt, task_id: TaskId)``;
* ``data``: ``handler(item, counter: Data[Counter])``, the counter given to
  ``WorkerBuilder.data()``.

Each handler counts (in the injected counter for ``data``) and stops the
worker at the ``n``-th task. The annotations are evaluated where the handlers
are defined (this module has no ``from __future__ import annotations``), after
pyapalis was imported afresh, as :mod:`benchmarks.peers.pyapalis_worker`
explains.
"""

import time
from collections.abc import Callable
from typing import Any

import trio

from ._probe import Probe

__all__ = ["SHAPES", "latency", "throughput"]

now = time.perf_counter

SHAPES = ("context", "attempt", "data")
"""The handler shapes, besides the args alone (``pyapalis-c1``)."""


class Counter:
    """What a ``Data[Counter]`` handler counts in."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


def _check(shape: str) -> str:
    if shape not in SHAPES:
        raise ValueError(f"unknown handler shape {shape!r}; known: {', '.join(SHAPES)}")
    return shape


def throughput(shape: str) -> Callable[[int, Probe], None]:
    """The throughput run of ``shape`` (see :func:`benchmarks.peers.pyapalis_worker.throughput`)."""
    _check(shape)

    def run(n: int, probe: Probe) -> None:
        trio.run(_throughput, shape, n, probe)

    return run


def _counting_handler(shape: str, n: int, on_last: Callable[[], None]) -> Callable[..., Any]:
    """A handler of ``shape`` that does what ``pyapalis-c1``'s does: count, and at
    the ``n``-th task call ``on_last`` and stop the worker (through ``ctx`` when
    it has one)."""
    from pyapalis import Attempt, Data, TaskId, WorkerContext

    count = 0
    if shape == "context":

        async def with_context(item: Any, ctx: WorkerContext) -> None:
            nonlocal count
            count += 1
            if count == n:
                on_last()
                ctx.stop()

        return with_context
    if shape == "attempt":

        async def with_attempt(item: Any, attempt: Attempt, task_id: TaskId) -> None:
            nonlocal count
            count += 1
            if count == n:
                on_last()

        return with_attempt

    async def with_data(item: Any, counter: Data[Counter]) -> None:
        counter.count += 1
        if counter.count == n:
            on_last()

    return with_data


async def _throughput(shape: str, n: int, probe: Probe) -> None:
    from pyapalis import MemoryStorage, WorkerBuilder

    storage = MemoryStorage()

    def on_last() -> None:
        probe.finish()
        if not worker.context.is_shutting_down:
            worker.context.stop()

    handler = _counting_handler(shape, n, on_last)
    worker = WorkerBuilder("bench").backend(storage).data(Counter()).build(handler)
    probe.start()
    push = storage.push_nowait
    for i in range(n):
        push(i)
    probe.pushed()
    await worker.run()


def latency(shape: str) -> Callable[[int], list[float]]:
    """The idle latency run of ``shape`` (push to handler start, the args carry the push time)."""
    _check(shape)

    def run(samples: int) -> list[float]:
        return trio.run(_latencies, shape, samples)

    return run


def _timing_handler(shape: str, handled: Callable[[float], None]) -> Callable[..., Any]:
    from pyapalis import Attempt, Data, TaskId, WorkerContext

    if shape == "context":

        async def with_context(pushed_at: float, ctx: WorkerContext) -> None:
            handled(now() - pushed_at)

        return with_context
    if shape == "attempt":

        async def with_attempt(pushed_at: float, attempt: Attempt, task_id: TaskId) -> None:
            handled(now() - pushed_at)

        return with_attempt

    async def with_data(pushed_at: float, counter: Data[Counter]) -> None:
        handled(now() - pushed_at)

    return with_data


async def _latencies(shape: str, samples: int) -> list[float]:
    from pyapalis import MemoryStorage, WorkerBuilder

    from .channels import let_consumer_park

    storage = MemoryStorage()
    measured: list[float] = []
    handled = trio.Event()

    def record(latency: float) -> None:
        measured.append(latency)
        handled.set()

    handler = _timing_handler(shape, record)
    worker = WorkerBuilder("latency").backend(storage).data(Counter()).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        for _ in range(samples):
            await let_consumer_park()
            handled = trio.Event()
            storage.push_nowait(now())
            await handled.wait()
        worker.context.stop()
    return measured
