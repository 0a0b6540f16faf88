"""Per-task overhead of each built-in layer, in nanoseconds.

A worker (concurrency 1, trivial ``async def`` handler that counts and stops
the worker at the ``n``-th task) drains ``n`` tasks queued beforehand in a
``MemoryStorage``, once per configuration:

* ``none``: no layer, the worker's one-frame path (the reference);
* ``passthrough``: a user layer that only awaits its inner service, so its
  overhead is the price of the layer machinery itself (the stack, the
  acknowledgement as a service, one more coroutine frame);
* each built-in layer on its own (``tracing`` with its logger disabled,
  ``tracing-on`` writing to a ``NullHandler``; ``prometheus`` and ``otel``
  when their libraries are installed, ``otel`` with an SDK tracer provider
  without exporters).

Overhead = (time with the layer - time with ``none``) / n. Suites:

* ``LayerDrain.time_drain``: the whole drain of ``n`` tasks per call (asv
  divides nothing: per-task cost = time / n), parametrized by implementation
  and layer, so ``asv compare`` tracks each layer separately;
* ``LayerOverhead.track_overhead_ns``: the overhead per task in ns,
  measured against ``none`` in the same process (best of a few runs each).

Plain script: ``python -m benchmarks.bench_layers [--n N] [--repeats R]``
prints a Markdown table; :func:`measure_overheads` returns the rows.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import trio

from ._support import IMPLEMENTATIONS, load_pyapalis

__all__ = [
    "LAYERS",
    "LayerDrain",
    "LayerOverhead",
    "Row",
    "format_table",
    "main",
    "measure_overheads",
]


def _private(name: str) -> Any:
    """A pyapalis module of the implementation loaded now (it may have been reloaded)."""
    return importlib.import_module(f"pyapalis.{name}")


def _passthrough(inner: Any) -> Any:
    async def service(task: Any) -> Any:
        return await inner(task)

    return service


def _quiet_logger(name: str, level: int) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def _installed(module: str) -> bool:
    """True when ``module`` can be imported; False also when a parent package is missing."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _prometheus() -> list[Any]:
    if not _installed("prometheus_client"):
        raise NotImplementedError("prometheus_client is not installed")
    from prometheus_client import CollectorRegistry

    return [_private("layers").PrometheusLayer(CollectorRegistry())]


def _otel() -> list[Any]:
    if not _installed("opentelemetry.sdk"):
        raise NotImplementedError("opentelemetry-sdk is not installed")
    from opentelemetry.sdk.trace import TracerProvider

    return [_private("layers").OpenTelemetryLayer(TracerProvider())]


LAYERS: dict[str, Callable[[], list[Any]]] = {
    "none": lambda: [],
    "passthrough": lambda: [_passthrough],
    "event_listener": lambda: [_private("layers").EventListenerLayer(lambda ctx, ev: None)],
    "acknowledge": lambda: [_private("layers").AcknowledgeLayer(lambda task, outcome: None)],
    "circuit_breaker": lambda: [_private("layers").CircuitBreakerLayer()],
    "long_running": lambda: [_private("layers").LongRunningLayer()],
    "retry": lambda: [
        _private("layers").RetryLayer(_private("_worker._retry").RetryPolicy.retries(3))
    ],
    "timeout": lambda: [_private("layers").TimeoutLayer(3600)],
    "catch_panic": lambda: [_private("layers").CatchPanicLayer()],
    "concurrency_limit": lambda: [_private("layers").ConcurrencyLimitLayer(1)],
    "rate_limit": lambda: [_private("layers").RateLimitLayer(10**9, 1)],
    "load_shed": lambda: [
        _private("layers").LoadShedLayer(),
        _private("layers").ConcurrencyLimitLayer(1),
    ],
    "tracing": lambda: [
        _private("layers").TracingLayer(_quiet_logger("bench.off", logging.WARNING))
    ],
    "tracing-on": lambda: [
        _private("layers").TracingLayer(_quiet_logger("bench.on", logging.INFO))
    ],
    "prometheus": _prometheus,
    "otel": _otel,
}
"""Layer configurations by name: each returns the layers to add (built on call)."""


async def drain_with(storage: Any, n: int, layers: Sequence[Any]) -> None:
    """Run a worker with ``layers`` and a counting handler until it handled ``n`` tasks."""
    from pyapalis import WorkerBuilder

    count = 0

    async def handler(_item: int) -> None:
        nonlocal count
        count += 1
        if count == n:
            worker.context.stop()

    builder = WorkerBuilder("bench-layers").backend(storage)
    for layer in layers:
        builder.layer(layer)
    worker = builder.build(handler)
    await worker.run()


def _filled_storage(n: int) -> Any:
    from pyapalis import MemoryStorage

    storage = MemoryStorage()
    push = storage.push_nowait
    for i in range(n):
        push(i)
    return storage


def _time_drain(n: int, layers: Sequence[Any]) -> float:
    """Seconds to drain ``n`` queued tasks (queueing not timed)."""
    storage = _filled_storage(n)
    gc.collect()
    start = time.perf_counter()
    trio.run(drain_with, storage, n, layers)
    return time.perf_counter() - start


@dataclass(frozen=True)
class Row:
    """One configuration's figures."""

    layer: str
    ns_per_task: float
    """Best run: drain time / n."""
    overhead_ns: float
    """ns_per_task minus that of ``none``."""
    over_passthrough_ns: float
    """ns_per_task minus that of ``passthrough`` (what the layer adds to any stack)."""
    median_ns_per_task: float
    skipped: str | None = None


def measure_overheads(
    n: int = 100_000,
    repeats: int = 5,
    layers: Sequence[str] | None = None,
    implementation: str | None = None,
) -> list[Row]:
    """Measure each configuration ``repeats`` times (interleaved); rows in ``layers`` order.

    ``none`` and ``passthrough`` are always measured (the references).
    """
    if implementation is not None:
        load_pyapalis(implementation)
    names = list(LAYERS) if layers is None else list(layers)
    unknown = [name for name in names if name not in LAYERS]
    if unknown:
        raise ValueError(f"measure_overheads: unknown layers {unknown}; known: {list(LAYERS)}")
    measured = [
        "none",
        "passthrough",
        *(name for name in names if name not in ("none", "passthrough")),
    ]
    built: dict[str, list[Any]] = {}
    skipped: dict[str, str] = {}
    for name in measured:
        try:
            built[name] = LAYERS[name]()
        except NotImplementedError as reason:
            skipped[name] = str(reason)
    runs: dict[str, list[float]] = {name: [] for name in built}
    _time_drain(min(n, 10_000), [])  # warm up the interpreter and the allocator
    for _ in range(repeats):
        for name, configured in built.items():
            # Fresh layers per run: the state (a rate window, a circuit) starts empty.
            configured = LAYERS[name]()
            runs[name].append(_time_drain(n, configured) / n * 1e9)
    best = {name: min(values) for name, values in runs.items()}
    rows = []
    for name in names if "none" in names else ["none", *names]:
        if name in skipped:
            nan = float("nan")
            rows.append(Row(name, nan, nan, nan, nan, skipped[name]))
            continue
        rows.append(
            Row(
                name,
                best[name],
                best[name] - best["none"],
                best[name] - best["passthrough"],
                statistics.median(runs[name]),
            )
        )
    return rows


def format_table(rows: Sequence[Row], n: int, repeats: int) -> str:
    """A Markdown table of ``rows``."""
    implementation = sys.modules["pyapalis._implementation"].IMPLEMENTATION
    lines = [
        f"Per-task cost of each layer: {n:,} tasks drained, concurrency 1, best of {repeats} "
        f"({implementation} core)",
        "",
        "| layer | ns/task | overhead vs none (ns) | over passthrough (ns) | median ns/task |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.skipped:
            lines.append(f"| {row.layer} | skipped: {row.skipped} | | | |")
            continue
        lines.append(
            f"| {row.layer} | {row.ns_per_task:,.0f} | {row.overhead_ns:+,.0f} | "
            f"{row.over_passthrough_ns:+,.0f} | {row.median_ns_per_task:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_layers",
        description="Per-task overhead of each built-in pyapalis layer, in ns.",
    )
    parser.add_argument("--n", type=int, default=100_000, help="tasks per drain (100,000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per layer (5)")
    parser.add_argument("--only", default=None, help=f"comma-separated layers: {','.join(LAYERS)}")
    parser.add_argument(
        "--implementation", choices=IMPLEMENTATIONS, default="cython", help="core (cython)"
    )
    args = parser.parse_args(argv)
    layers = args.only.split(",") if args.only else None
    rows = measure_overheads(args.n, args.repeats, layers, args.implementation)
    print(format_table(rows, args.n, args.repeats))


# -- asv suites -------------------------------------------------------------------------


class LayerDrain:
    """A worker with one layer configuration drains ``n`` tasks queued in ``setup()``."""

    params: ClassVar[list[list[Any]]] = [IMPLEMENTATIONS, list(LAYERS)]
    param_names: ClassVar[list[str]] = ["implementation", "layer"]
    n = 50_000
    number = 1
    repeat = (3, 10, 30.0)
    warmup_time = 0.0
    timeout = 300.0

    def setup(self, implementation: str, layer: str) -> None:
        load_pyapalis(implementation)
        self.layers = LAYERS[layer]()  # NotImplementedError: asv skips the row
        self.storage = _filled_storage(self.n)

    def time_drain(self, implementation: str, layer: str) -> None:
        """Worker start to the ``n``-th task (per-task cost = time / n)."""
        trio.run(drain_with, self.storage, self.n, self.layers)


class LayerOverhead:
    """The overhead of one layer per task, in ns, against no layer in the same process."""

    params: ClassVar[list[list[Any]]] = [
        IMPLEMENTATIONS,
        [name for name in LAYERS if name != "none"],
    ]
    param_names: ClassVar[list[str]] = ["implementation", "layer"]
    n = 50_000
    repeats = 3
    number = 1
    repeat = 1
    timeout = 300.0

    def setup(self, implementation: str, layer: str) -> None:
        load_pyapalis(implementation)
        LAYERS[layer]()  # NotImplementedError: asv skips the row

    def track_overhead_ns(self, implementation: str, layer: str) -> float:
        """ns per task added by the layer (best of ``repeats`` drains each)."""
        [_none, row] = measure_overheads(self.n, self.repeats, ["none", layer])
        return row.overhead_ns

    track_overhead_ns.unit = "ns"  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
