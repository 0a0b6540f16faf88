"""SqliteStorage end to end, side by side with its limit and its peers (issue 14, Measure).

Run ``python -m benchmarks.sqlite_bench [--n 20000] [--latency-samples 200]``.
In one run, on one file system, it measures:

* **push_bulk + drain**: ``n`` tasks pushed in one ``push_bulk``, drained by
  one worker *process* at concurrency 32 (no-op handler); tasks/s from the
  start of the push to the moment every task is Done in the file. For
  SqliteStorage with ``synchronous`` NORMAL and FULL; against, in the same
  run: a raw ``sqlite3`` loop doing the same claim/ack work in batches of
  100 in one process (the limit), JsonStorage (one process per file: the
  worker runs in the pushing process) and huey's ``SqliteHuey`` (its
  consumer with 32 worker threads; it has no bulk enqueue).
* **one-by-one pushes from another process**: a producer process pushes
  ``n`` tasks one by one while the worker process drains; tasks/s from the
  first push to the last task Done.
* **pickup latency** of an idle worker: push -> handler start, in the
  worker's process (p50/p99 over ``--latency-samples``, a pause before each)
  and across processes (the push's wall time travels in the task).

The throughput rows run ``--repeats`` times (3), round-robin, each time on new
files, and the median is reported: the machine is shared and noisy.

Figures vary with the machine and its load: compare rows of one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["main"]

now = time.perf_counter
CONCURRENCY = 32
BATCH = 100


@dataclasses.dataclass
class Row:
    name: str
    tasks_per_second: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""


# -- the worker process ---------------------------------------------------------------


def _worker_process(url: str, mode: str, out: str) -> None:
    """A worker at concurrency 32 until SIGTERM; ``latency`` mode records pickup delays."""
    from pyapalis import WorkerBuilder, open_backend

    storage = open_backend(url)
    delays: list[float] = []

    def drain(item: Any) -> None:
        pass

    def latency(pushed_at: float) -> None:
        delays.append(time.time() - pushed_at)

    handler: Callable[[Any], None] = latency if mode == "latency" else drain
    worker = WorkerBuilder("bench").backend(storage).concurrency(CONCURRENCY).build(handler)
    ready = out + ".ready"

    async def run() -> None:
        async with storage, trio.open_nursery() as nursery:

            async def stop() -> None:
                with trio.open_signal_receiver(signal.SIGTERM) as signals:
                    open(ready, "w").close()
                    async for _ in signals:
                        worker.context.stop()
                        return

            nursery.start_soon(stop)
            await worker.run()
            nursery.cancel_scope.cancel()

    trio.run(run)
    with open(out, "w", encoding="utf-8") as file:
        json.dump(delays, file)


class _Worker:
    def __init__(self, url: str, mode: str, directory: str) -> None:
        self.out = os.path.join(directory, f"worker-{mode}-{time.monotonic_ns()}.json")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sqlite_bench", "--worker", url, mode, self.out]
        )
        deadline = time.monotonic() + 60
        while not os.path.exists(self.out + ".ready"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the worker process did not start")
            time.sleep(0.01)
        time.sleep(0.2)  # its first claim has run: it is idle

    def stop(self) -> list[float]:
        self.process.send_signal(signal.SIGTERM)
        if self.process.wait(timeout=120) != 0:
            raise RuntimeError("the worker process failed")
        with open(self.out, encoding="utf-8") as file:
            delays: list[float] = json.load(file)
        return delays


def _wait_done(path: str, n: int, timeout: float = 600) -> float:
    """Poll the file until its ``n`` tasks are finished; the moment it saw so (perf_counter)."""
    connection = sqlite3.connect(path, timeout=30)
    deadline = now() + timeout
    try:
        while now() < deadline:
            # Cheap: both counts read a partial index (what is left, not what is done).
            left = connection.execute(
                "SELECT (SELECT count(*) FROM tasks WHERE status = 'Pending') "
                "+ (SELECT count(*) FROM tasks WHERE status = 'Running'), "
                "(SELECT max(rowid) FROM tasks)"
            ).fetchone()
            if left[0] == 0 and (left[1] or 0) >= n:
                return now()
            time.sleep(0.003)
    finally:
        connection.close()
    raise RuntimeError(f"not all {n} tasks were Done within {timeout} s")


# -- SqliteStorage --------------------------------------------------------------------


def sqlite_push_bulk(directory: str, n: int, synchronous: str) -> Row:
    from pyapalis import SqliteStorage

    path = os.path.join(directory, f"bulk-{synchronous}.db")
    url = f"sqlite://{path}?synchronous={synchronous}"
    trio.run(_open_once, path)
    worker = _Worker(url, "drain", directory)
    try:

        async def push_and_wait() -> float:
            async with SqliteStorage(path, synchronous=synchronous) as storage:
                start = now()  # the storage is open: the push and the drain are timed
                await storage.push_bulk(range(n))
                return await trio.to_thread.run_sync(_wait_done, path, n) - start

        seconds = trio.run(push_and_wait)
    finally:
        worker.stop()
    return Row(f"SqliteStorage {synchronous}: push_bulk + drain", n / seconds)


def sqlite_one_by_one(directory: str, n: int, synchronous: str) -> Row:
    path = os.path.join(directory, f"single-{synchronous}.db")
    url = f"sqlite://{path}?synchronous={synchronous}"
    trio.run(_open_once, path)
    worker = _Worker(url, "drain", directory)
    try:
        start = now()
        producer = subprocess.run(
            [sys.executable, "-m", "benchmarks.sqlite_bench", "--produce", url, str(n)],
            check=True,
        )
        del producer
        finished = _wait_done(path, n)
    finally:
        worker.stop()
    return Row(
        f"SqliteStorage {synchronous}: pushes one by one from another process",
        n / (finished - start),
    )


def _produce(url: str, n: int) -> None:
    from pyapalis import open_backend

    async def run() -> None:
        async with open_backend(url) as storage:
            for item in range(n):
                await storage.push(item)

    trio.run(run)


async def _open_once(path: str) -> None:
    from pyapalis import SqliteStorage

    async with SqliteStorage(path):
        pass


def sqlite_latency_in_process(directory: str, samples: int) -> Row:
    from pyapalis import SqliteStorage, WorkerBuilder

    path = os.path.join(directory, "latency-local.db")
    delays: list[float] = []

    async def run() -> None:
        async with SqliteStorage(path) as storage:
            got = trio.Event()
            pushed = [0.0]

            def handler(item: int) -> None:
                delays.append(now() - pushed[0])
                got.set()

            worker = WorkerBuilder("lat").backend(storage).concurrency(CONCURRENCY).build(handler)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker.run)
                await trio.sleep(0.2)
                for item in range(samples):
                    await trio.sleep(0.005)  # idle again
                    got = trio.Event()
                    pushed[0] = now()
                    await storage.push(item)
                    await got.wait()
                worker.context.stop()

    trio.run(run)
    return _latency_row("SqliteStorage: idle pickup, push in the worker's process", delays)


def sqlite_latency_cross_process(directory: str, samples: int) -> Row:
    from pyapalis import SqliteStorage

    path = os.path.join(directory, "latency-remote.db")
    trio.run(_open_once, path)
    worker = _Worker(f"sqlite://{path}", "latency", directory)
    try:

        async def run() -> None:
            async with SqliteStorage(path) as storage:
                for _ in range(samples):
                    await trio.sleep(0.03)  # the worker is idle again
                    await storage.push(time.time())

        trio.run(run)
        _wait_done(path, samples)
    finally:
        delays = worker.stop()
    return _latency_row("SqliteStorage: idle pickup, push from another process", delays)


def _latency_row(name: str, delays: list[float]) -> Row:
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Row(name, p50_ms=statistics.median(ordered) * 1e3, p99_ms=p99 * 1e3)


# -- the limit: a raw sqlite3 loop ------------------------------------------------------


def raw_loop(directory: str, n: int, synchronous: str) -> Row:
    """The claim/ack work of SqliteStorage as a bare loop: batches of 100, acks folded in."""
    path = os.path.join(directory, f"raw-{synchronous}.db")
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    connection.execute(
        "CREATE TABLE tasks (id TEXT PRIMARY KEY, queue TEXT, args BLOB, status TEXT, "
        "attempt INTEGER, priority INTEGER, run_at INTEGER, owner TEXT, lease_until INTEGER, "
        "result BLOB)"
    )
    connection.execute(
        "CREATE INDEX ready ON tasks (queue, priority DESC, run_at) WHERE status = 'Pending'"
    )
    start = now()
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(
        "INSERT INTO tasks VALUES (?, 'q', ?, 'Pending', 0, 0, 0, NULL, NULL, NULL)",
        ((f"{i:026d}", str(i).encode()) for i in range(n)),
    )
    connection.execute("COMMIT")
    acks: list[tuple[str, int]] = []
    done = 0
    while True:
        connection.execute("BEGIN IMMEDIATE")
        if acks:
            connection.executemany(
                "UPDATE tasks SET status = 'Done', result = NULL, owner = NULL WHERE id = ? "
                "AND owner = 'w' AND attempt = ? AND status = 'Running'",
                acks,
            )
        rows = connection.execute(
            "UPDATE tasks SET status = 'Running', owner = 'w', attempt = attempt + 1, "
            "lease_until = 1 WHERE rowid IN (SELECT rowid FROM tasks WHERE queue = 'q' AND "
            "status = 'Pending' AND run_at <= 1 ORDER BY priority DESC, run_at LIMIT ?) "
            "RETURNING id, args, attempt",
            (BATCH,),
        ).fetchall()
        connection.execute("COMMIT")
        done += len(acks)
        if not rows:
            break
        acks = [(row[0], row[2]) for row in rows]
    finished = now()
    connection.close()
    if done != n:
        raise RuntimeError(f"the raw loop finished {done} of {n}")
    return Row(
        f"raw sqlite3 loop {synchronous}: batches of {BATCH} (the limit)", n / (finished - start)
    )


# -- JsonStorage and huey --------------------------------------------------------------


def json_storage(directory: str, n: int) -> Row:
    from benchmarks.json_vs_sqlite import push_and_drain

    _, total = trio.run(push_and_drain, os.path.join(directory, "tasks.jsonl"), n, CONCURRENCY)
    return Row("JsonStorage: push_bulk + drain (in one process)", n / total)


def huey_sqlite(directory: str, n: int) -> Row:
    try:
        from huey import SqliteHuey
    except ImportError:
        return Row("huey SqliteHuey", note="not installed (pip install -e '.[bench]')")
    import logging

    logging.getLogger("huey").setLevel(logging.WARNING)
    huey = SqliteHuey("bench", filename=os.path.join(directory, "huey.db"))
    count = 0
    lock = threading.Lock()
    finished = threading.Event()

    @huey.task()
    def handler(item: int) -> None:
        nonlocal count
        with lock:
            count += 1
            if count == n:
                finished.set()

    consumer = huey.create_consumer(workers=CONCURRENCY, worker_type="thread", periodic=False)
    start = now()
    for item in range(n):
        handler(item)
    consumer.start()
    try:
        if not finished.wait(timeout=600):
            raise RuntimeError(f"huey handled {count} of {n} in 600 s")
        end = now()
    finally:
        consumer.stop(graceful=True)
    return Row("huey SqliteHuey: enqueue + drain (32 worker threads)", n / (end - start))


# -- the table ----------------------------------------------------------------------------


def run(n: int, samples: int, huey_n: int, repeats: int = 3) -> list[Row]:
    """Every row, the throughput ones ``repeats`` times round-robin (median kept)."""
    measured: dict[str, list[Row]] = {}
    with tempfile.TemporaryDirectory(prefix="pyapalis-sqlite-bench-") as directory:
        for repeat in range(repeats):
            fresh = os.path.join(directory, str(repeat))  # every repeat on new files
            os.mkdir(fresh)
            rows: list[Row] = []
            for synchronous in ("NORMAL", "FULL"):
                rows.append(raw_loop(fresh, n, synchronous))
                rows.append(sqlite_push_bulk(fresh, n, synchronous))
            rows.append(json_storage(fresh, n))
            rows.append(huey_sqlite(fresh, huey_n))
            for synchronous in ("NORMAL", "FULL"):
                rows.append(sqlite_one_by_one(fresh, max(n // 4, 1), synchronous))
            for row in rows:
                measured.setdefault(row.name, []).append(row)
        result = [_median(rows) for rows in measured.values()]
        result.append(sqlite_latency_in_process(directory, samples))
        result.append(sqlite_latency_cross_process(directory, samples))
    return result


def _median(rows: list[Row]) -> Row:
    rates = [row.tasks_per_second for row in rows if row.tasks_per_second is not None]
    if not rates:
        return rows[0]
    return dataclasses.replace(rows[0], tasks_per_second=statistics.median(rates))


def _print(rows: list[Row]) -> None:
    baseline = next((r.tasks_per_second for r in rows if r.name.startswith("huey")), None)
    for row in rows:
        if row.tasks_per_second is not None:
            ratio = f"  ({row.tasks_per_second / baseline:5.1f}x huey)" if baseline else ""
            print(f"{row.name:<70} {row.tasks_per_second:>10,.0f} tasks/s{ratio}")
        elif row.p50_ms is not None:
            print(f"{row.name:<70} p50 {row.p50_ms:7.2f} ms  p99 {row.p99_ms:7.2f} ms")
        else:
            print(f"{row.name:<70} {row.note}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--worker":
        _worker_process(args[1], args[2], args[3])
        return
    if args and args[0] == "--produce":
        _produce(args[1], int(args[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--huey-n", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args(args)
    _print(run(options.n, options.latency_samples, options.huey_n, options.repeats))


if __name__ == "__main__":
    main()
