"""Cross-thread pushes into a background runtime against same-thread pushes, in one run.

    python benchmarks/runtime_latency.py [--samples 2000] [--tasks 200000]
    python benchmarks/runtime_latency.py --against ../before [--rounds 2]

Latency: one producer pushes a task to an idle worker and waits until the
handler has started, ``samples`` times; reported is push-to-handler-start
(p50, p99, in µs). *same thread*: a trio task pushes with ``push_nowait`` to a
worker in the same run. *other thread*: a plain thread pushes with
``runtime.push`` to a worker that ``start_in_thread`` runs. *submit round trip*:
``runtime.submit`` to ``future.result()`` returning in the producer thread.
*floor*: no worker at all, a plain thread (then a trio task) blocked on an
eventfd that the producer writes to, the same way: what waking an idle thread
costs on this machine (on a VM, mostly waking an idle virtual CPU), measured in
the same run so the cross-thread figure can be read against it.

Throughput: ``tasks`` tasks pushed while the worker consumes, from the first
push to the last handler call (a trivial handler). *same thread*: one trio task
pushes, yielding every 64 pushes. *k threads*: k plain threads push ``tasks/k``
each, fire-and-forget (``runtime.push``), with ``runtime.submit`` (a future
per task, all resolved at the end), or with one ``runtime.submit_batch`` (one
future of the thread's whole share).

Targets (issue 8): cross-thread p50 <= 50 µs; cross-thread throughput at least
half the same-thread throughput.

Before/after in one run: ``--against DIR`` measures a second checkout (say a
``git worktree`` of the previous commit, its extension built) with this same
script, alternating fresh processes of the two trees ``rounds`` times, and
prints the median of each figure side by side (``--json`` prints one tree's
figures as JSON; ``PYAPALIS_BENCH_TREE=DIR`` picks the tree to import).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import selectors
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import trio

sys.path.insert(
    0, os.environ.get("PYAPALIS_BENCH_TREE") or str(Path(__file__).resolve().parents[1])
)

from pyapalis import MemoryStorage, WorkerBuilder
from pyapalis._implementation import IMPLEMENTATION
from pyapalis.backends._memory._handoff import Handoff
from pyapalis.embed._runtime import BackgroundRuntime, start_in_thread

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


SPIN = 200e-6
"""The ``spin`` the *spin* rows run the runtime with (seconds)."""

SPIN_SUPPORTED = "spin" in inspect.signature(start_in_thread).parameters
"""False for a tree from before the option (``--against``): its spin rows are NaN."""


def _start(worker: object, spin: float) -> BackgroundRuntime:
    if spin and not SPIN_SUPPORTED:
        raise NotImplementedError("this tree's start_in_thread has no spin option")
    return start_in_thread(worker, spin=spin) if spin else start_in_thread(worker)


def latency_other_thread(samples: int, spin: float = 0.0) -> list[float]:
    """Push from this (plain) thread to a parked worker on the runtime's thread."""
    storage = MemoryStorage()
    started = [0.0]
    handled = threading.Event()

    def handler(_item: int) -> None:
        started[0] = perf_counter()
        handled.set()

    worker = WorkerBuilder("latency").backend(storage).build(handler)
    results: list[float] = []
    with _start(worker, spin) as runtime:
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


class _IoWakeClock(trio.abc.Instrument):
    """Notes when trio's I/O wait (epoll) returns on the run's thread.

    ``after_io_wait`` runs once the thread is back from the kernel and holds
    the GIL again: the first Python line after the wake-up.
    """

    def __init__(self) -> None:
        self.woke_at = 0.0

    def after_io_wait(self, timeout: float) -> None:
        self.woke_at = perf_counter()


HOPS = (
    "push call returns (producer)",
    "epoll returns, GIL held (trio thread)",
    "waker task hands over",
    "handler's first line",
)
"""The stops between a producer's push and its handler, in order (see latency_hops)."""


def latency_hops(samples: int) -> dict[str, list[float]]:
    """:func:`latency_other_thread` with a timestamp at every hop (seconds since the push).

    * the producer's ``runtime.push`` returns (the task is queued and the
      waker's eventfd written);
    * trio's epoll wait returns on the runtime's thread and that thread holds
      the GIL again (a trio instrument's ``after_io_wait``);
    * the storage's waker task runs and hands the task to the parked consumer
      (``Handoff._wake_consumers``, wrapped here);
    * the handler's first line runs.

    The instrument and the wrapper cost a little: read these for where the
    time goes, and the uninstrumented row for the total.
    """
    storage = MemoryStorage()
    stamps = {hop: 0.0 for hop in HOPS}
    handled = threading.Event()
    clock = _IoWakeClock()
    original = Handoff._wake_consumers

    def wake_consumers(self: Handoff) -> None:
        stamps[HOPS[2]] = perf_counter()
        # Read now: after the handler, the run may wait for I/O again.
        stamps[HOPS[1]] = clock.woke_at
        original(self)

    def handler(_item: int) -> None:
        stamps[HOPS[3]] = perf_counter()
        handled.set()

    worker = WorkerBuilder("latency").backend(storage).build(handler)
    results: dict[str, list[float]] = {hop: [] for hop in HOPS}
    Handoff._wake_consumers = wake_consumers  # type: ignore[method-assign]
    try:
        with start_in_thread(worker) as runtime:
            trio.from_thread.run_sync(trio.lowlevel.add_instrument, clock, trio_token=runtime.token)
            for _ in range(samples):
                while not storage.statistics().consumers_waiting:
                    time.sleep(20e-6)
                handled.clear()
                t0 = perf_counter()
                runtime.push(storage, 0)
                stamps[HOPS[0]] = perf_counter()
                handled.wait()
                for hop in HOPS:
                    results[hop].append(stamps[hop] - t0)
    finally:
        Handoff._wake_consumers = original  # type: ignore[method-assign]
    return results


class _Sleeper:
    """What a floor's sleeping side shares with the producer."""

    def __init__(self) -> None:
        self.waiting = False
        self.woken_at = 0.0
        self.woken = threading.Event()

    def woke(self) -> None:
        """Call first thing after the wait returns."""
        self.woken_at = perf_counter()
        self.waiting = False


def _wake_sleeper(samples: int, write_fd: int, sleeper: _Sleeper) -> list[float]:
    """The producer side of a floor, paced as :func:`latency_other_thread` is."""
    results: list[float] = []
    for _ in range(samples):
        while not sleeper.waiting:
            time.sleep(20e-6)
        sleeper.woken.clear()
        t0 = perf_counter()
        os.write(write_fd, (1).to_bytes(8, sys.byteorder))
        sleeper.woken.wait()
        results.append(sleeper.woken_at - t0)
    return results


def latency_wake_floor(samples: int) -> list[float]:
    """No pyapalis, no trio: the same hand-over between two plain threads.

    A thread blocks in ``select`` on an eventfd (a pipe where there is none);
    the producer, woken as in :func:`latency_other_thread`, writes to it as
    soon as the sleeper is back in its wait. What that costs is the floor of
    the cross-thread figure on this machine: on a VM, waking a thread on an
    idle virtual CPU from a busy one is most of it.
    """
    if hasattr(os, "eventfd"):
        read_fd = write_fd = os.eventfd(0, os.EFD_NONBLOCK)
    else:  # pragma: no cover - not Linux
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
    selector = selectors.DefaultSelector()
    selector.register(read_fd, selectors.EVENT_READ)
    state = _Sleeper()

    def sleeper() -> None:
        for _ in range(samples):
            state.waiting = True
            selector.select()
            state.woke()
            os.read(read_fd, 8)
            state.woken.set()

    thread = threading.Thread(target=sleeper, daemon=True)
    thread.start()
    try:
        results = _wake_sleeper(samples, write_fd, state)
        thread.join()
    finally:
        selector.close()
        os.close(read_fd)
        if write_fd != read_fd:  # pragma: no cover - not Linux
            os.close(write_fd)
    return results


def latency_trio_wake_floor(samples: int) -> list[float]:
    """:func:`latency_wake_floor` with a trio task as the sleeper.

    The task waits in ``trio.lowlevel.wait_readable`` on an eventfd, as the
    waker task of a MemoryStorage does: what trio itself adds to the plain
    floor, before pyapalis hands the task to a consumer.
    """
    if not hasattr(os, "eventfd"):  # pragma: no cover - not Linux
        return latency_wake_floor(samples)
    fd = os.eventfd(0, os.EFD_NONBLOCK)
    state = _Sleeper()

    async def sleeper() -> None:
        for _ in range(samples):
            state.waiting = True
            await trio.lowlevel.wait_readable(fd)
            state.woke()
            os.read(fd, 8)
            state.woken.set()

    thread = threading.Thread(target=trio.run, args=(sleeper,), daemon=True)
    thread.start()
    try:
        results = _wake_sleeper(samples, fd, state)
        thread.join()
    finally:
        os.close(fd)
    return results


def latency_other_thread_spin(samples: int) -> list[float]:
    """:func:`latency_other_thread` with the runtime's ``spin`` option set to :data:`SPIN`."""
    return latency_other_thread(samples, SPIN)


def spin_cpu_cost(spin: float, interval: float | None, seconds: float = 1.0) -> float:
    """CPU-seconds the runtime's thread uses per second of wall time.

    A plain thread pushes one task every ``interval`` seconds (None: never)
    for ``seconds``; the handler does nothing. The runtime runs with ``spin``.
    """
    storage = MemoryStorage()
    worker = WorkerBuilder("cpu").backend(storage).build(lambda _item: None)
    with _start(worker, spin) as runtime:
        ident = runtime.thread.ident
        assert ident is not None
        clock = time.pthread_getcpuclockid(ident)
        runtime.push(storage, 0)  # starts the storage's waker (and the spinning)
        time.sleep(0.05)
        cpu0, t0 = time.clock_gettime(clock), perf_counter()
        end = t0 + seconds
        while (now := perf_counter()) < end:
            if interval is None:
                time.sleep(end - now)
            else:
                runtime.push(storage, 0)
                time.sleep(interval)
        cpu = time.clock_gettime(clock) - cpu0
        elapsed = perf_counter() - t0
    return cpu / elapsed


CPU_ROWS = (
    ("no pushes", None),
    ("a push every 10 ms", 10e-3),
    ("a push every 1 ms", 1e-3),
    ("a push every 100 µs", 100e-6),
)


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


def throughput_threads(tasks: int, producers: int, how: str = "push") -> float:
    """Tasks per second, queued by ``producers`` plain threads ``how`` says: ``push``,
    ``submit`` (a future per task) or ``submit_batch`` (one per thread's share)."""
    if how not in HOW:
        raise ValueError(f"throughput_threads: how must be one of {HOW}, got {how!r}")
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
            gate.wait()
            if how == "submit_batch":
                runtime.submit_batch(storage, range(share)).result()
            elif how == "submit":
                futures = [runtime.submit(storage, i) for i in range(share)]
                # One worker loop runs tasks in push order: the last future
                # resolves last (waking on every future would measure thread
                # wake-ups, not the runtime).
                futures[-1].result()
                assert all(future.done() for future in futures)
            else:
                push = runtime.push
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


LATENCY_ROWS = (
    ("same thread (trio task, push_nowait)", latency_same_thread),
    ("other thread (runtime.push)", latency_other_thread),
    (f"other thread, spin={SPIN * 1e6:.0f} µs", latency_other_thread_spin),
    ("floor: plain thread woken through an eventfd", latency_wake_floor),
    ("floor: trio task woken through an eventfd", latency_trio_wake_floor),
    ("submit -> future.result() round trip", submit_round_trip),
)


def measure(samples: int, tasks: int, *, only_latency: bool = False) -> dict[str, float]:
    """Every figure: ``"<row> p50"`` / ``"<row> p99"`` in µs, ``"<row>"`` in tasks/s."""
    figures: dict[str, float] = {}
    for label, run in LATENCY_ROWS:
        if run is latency_other_thread_spin and not SPIN_SUPPORTED:
            figures[f"{label} p50"] = figures[f"{label} p99"] = math.nan
            continue
        values = sorted(run(samples))
        figures[f"{label} p50"] = percentile(values, 0.5) * 1e6
        figures[f"{label} p99"] = percentile(values, 0.99) * 1e6
    for hop, values in latency_hops(samples).items():
        values.sort()
        figures[f"hop: {hop} p50"] = percentile(values, 0.5) * 1e6
        figures[f"hop: {hop} p99"] = percentile(values, 0.99) * 1e6
    for label, interval in CPU_ROWS:
        for spin in (0.0, SPIN):
            key = f"cpu: {label}, spin={spin * 1e6:.0f} µs"
            supported = SPIN_SUPPORTED or not spin
            figures[key] = spin_cpu_cost(spin, interval) if supported else math.nan
    if only_latency:
        return figures
    figures[SAME] = statistics.median(throughput_same_thread(tasks) for _ in range(3))
    for how in HOW:
        for producers in (1, 2, 3, 4):
            figures[_threads_label(producers, how)] = statistics.median(
                throughput_threads(tasks - tasks % producers, producers, how) for _ in range(3)
            )
    return figures


SAME = "same thread (trio task, push_nowait)"


HOW = ("push", "submit", "submit_batch")
"""How the producer threads queue: fire and forget, a future each, one future per thread."""


def _threads_label(producers: int, how: str) -> str:
    label = "submit + wait" if how == "submit" else how
    return f"{producers} thread{'s' if producers > 1 else ''} ({label})"


def _throughput_labels() -> list[str]:
    return [SAME] + [_threads_label(k, how) for how in HOW for k in (1, 2, 3, 4)]


def print_figures(samples: int, tasks: int, figures: dict[str, float]) -> None:
    print(f"\nlatency, push to handler start ({samples} samples)    p50 µs    p99 µs")
    for label, _run in LATENCY_ROWS:
        print(f"  {label:<46}{figures[label + ' p50']:8.1f}{figures[label + ' p99']:10.1f}")
    print_hops(figures)
    print("\nruntime thread, CPU-seconds per second           spin off  spin on")
    for label, _interval in CPU_ROWS:
        off = figures[f"cpu: {label}, spin=0 µs"]
        on = figures[f"cpu: {label}, spin={SPIN * 1e6:.0f} µs"]
        print(f"  {label:<46}{off:8.3f}{on:9.3f}")
    if SAME not in figures:
        return
    print(f"\nthroughput ({tasks} tasks)                          tasks/s   vs same thread")
    same = figures[SAME]
    for label in _throughput_labels():
        print(f"  {label:<46}{figures[label]:10,.0f}{figures[label] / same:10.2f}")


def print_hops(figures: dict[str, float]) -> None:
    """Where the other-thread time goes, as µs since the push and as multiples of the floors."""
    plain = figures["floor: plain thread woken through an eventfd p50"]
    trio_floor = figures["floor: trio task woken through an eventfd p50"]
    print("\nother thread, hop by hop (instrumented run)     p50 µs  p50 step   x plain  x trio")
    previous = 0.0
    for hop in HOPS:
        at = figures[f"hop: {hop} p50"]
        print(f"  {hop:<46}{at:8.1f}{at - previous:10.1f}{at / plain:10.1f}{at / trio_floor:8.2f}")
        previous = at


def compare_trees(
    trees: dict[str, str], samples: int, tasks: int, rounds: int, *, only_latency: bool = False
) -> None:
    """Measure each tree in fresh processes, alternating; print medians side by side."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for round_ in range(rounds):
        for name, tree in trees.items():
            print(f"round {round_ + 1}/{rounds}: {name} ({tree})", file=sys.stderr, flush=True)
            env = {**os.environ, "PYAPALIS_BENCH_TREE": tree}
            command = [sys.executable, __file__, "--json", f"--samples={samples}"]
            if only_latency:
                command.append("--latency-only")
            output = subprocess.run(
                [*command, f"--tasks={tasks}"], env=env, check=True, capture_output=True, text=True
            ).stdout
            figures = json.loads(output)
            runs[name].append(figures)
            other = figures["other thread (runtime.push) p50"]
            print(f"  other thread p50 {other:.1f} µs", file=sys.stderr)
    names = list(trees)
    medians = {
        name: {key: statistics.median(run[key] for run in runs[name]) for key in runs[name][0]}
        for name in names
    }
    header = "".join(f"{name:>14}" for name in names)
    print(f"medians of {rounds} alternating rounds; {samples} samples, {tasks} tasks")
    print(f"\nlatency, push to handler start, µs                   {header}")
    latency_keys = [f"{label} {q}" for label, _run in LATENCY_ROWS for q in ("p50", "p99")]
    latency_keys += [f"hop: {hop} p50" for hop in HOPS]
    for key in latency_keys:
        cells = "".join(f"{medians[name][key]:14.1f}" for name in names)
        print(f"  {key:<52}{cells}")
    for name in names:
        plain = medians[name]["floor: plain thread woken through an eventfd p50"]
        trio_floor = medians[name]["floor: trio task woken through an eventfd p50"]
        other = medians[name]["other thread (runtime.push) p50"]
        spun = medians[name][f"other thread, spin={SPIN * 1e6:.0f} µs p50"]
        print(
            f"  {name}: other thread p50 = {other / plain:.1f}x the plain floor, "
            f"{other / trio_floor:.2f}x the trio floor; with spin {spun / trio_floor:.2f}x"
        )
    print(f"\nruntime thread, CPU-seconds per second, spin off / spin={SPIN * 1e6:.0f} µs")
    for label, _interval in CPU_ROWS:
        cells = "".join(
            f"{medians[name][f'cpu: {label}, spin=0 µs']:8.3f} /"
            f"{medians[name][f'cpu: {label}, spin={SPIN * 1e6:.0f} µs']:6.3f}"
            for name in names
        )
        print(f"  {label:<52}{cells}")
    if SAME not in medians[names[0]]:
        return
    print(f"\nthroughput, tasks/s (x same thread of the same tree) {header}")
    for label in _throughput_labels():
        cells = "".join(
            f"{medians[name][label]:9,.0f} {medians[name][label] / medians[name][SAME]:4.2f}"
            for name in names
        )
        print(f"  {label:<52}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--latency-only", action="store_true", help="skip the throughput rows")
    parser.add_argument("--against", metavar="DIR", help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (--against)")
    options = parser.parse_args()
    samples, tasks = options.samples, options.tasks
    if options.against:
        this = str(Path(__file__).resolve().parents[1])
        trees = {"before": str(Path(options.against).resolve()), "after": this}
        compare_trees(trees, samples, tasks, options.rounds, only_latency=options.latency_only)
        return
    if options.json:
        print(json.dumps(measure(samples, tasks, only_latency=options.latency_only)))
        return
    print(f"pyapalis core: {IMPLEMENTATION}; Python {sys.version.split()[0]}")
    print_figures(samples, tasks, measure(samples, tasks, only_latency=options.latency_only))


if __name__ == "__main__":
    main()
