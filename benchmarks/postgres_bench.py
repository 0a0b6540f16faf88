"""PostgresStorage against procrastinate and pgqueuer, on one server, in one run.

    python -m benchmarks.postgres_bench [--n 20000] [--slow-n 2000] [--repeats 3]
        [--workers 1 2] [--one-by-one 2000] [--latency-samples 100]
        [--dsn postgresql://postgres@127.0.0.1:5432/test]
        [--contenders pyapalis pyapalis-async-commit procrastinate pgqueuer] [--json out.json]

For each contender, every scenario starts from a fresh schema of its own:

* **drain**: ``n`` no-op tasks pushed in bulk, then 1 or 2 worker processes
  (already connected, released together) drain them; tasks/s = n / (time
  until the parent sees no task left unfinished). Completion is read from the
  database every 10 ms, so what is counted is acknowledged and committed.
* **one by one**: a producer process pushes tasks one at a time (a
  transaction each) while the workers consume; tasks/s from the first push
  to the last task finished.
* **pickup latency**: one idle worker process; the parent pushes one task at
  a time stamped with ``time.time()``; the worker prints how long after the
  push its handler started. p50 and p99.

The contenders run the same no-op handler with 16 concurrent slots and
batches of 100 where they have them (pgqueuer ``batch_size``, pyapalis
``batch`` and ``prefetch``). ``pyapalis-async-commit`` is pyapalis with
``synchronous_commit=off`` for its sessions. The machine is shared and
noisy: rounds interleave the contenders and each figure is the median of its
rounds; read the ratios, measured side by side in this run, not the absolute
figures. procrastinate drains ``--slow-n`` tasks (it runs about a hundred a
second here; tasks/s does not depend on n). The peers are in the ``bench``
extra; this module imports none of them (nor psycopg) at import time, so asv
can collect ``benchmarks/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.peers.postgres_peers import (
    PYAPALIS,
    pgqueuer_queries,
    procrastinate_app,
    pyapalis_storage,
)

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CONTENDERS = ["pyapalis", "pyapalis-async-commit", "procrastinate", "pgqueuer"]
_ROOT = Path(__file__).resolve().parent.parent


def _sql(dsn: str, statement: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


class Contender:
    """One queue under test: its schema, bulk push, single push and unfinished count."""

    def __init__(self, name: str, dsn: str, batch: int, concurrency: int) -> None:
        self.name = name
        self.dsn = dsn
        self.namespace = "bench_" + name.replace("-", "_")
        self.config = {
            "contender": name,
            "dsn": dsn,
            "namespace": self.namespace,
            "batch": batch,
            "concurrency": concurrency,
        }
        self._runner = asyncio.Runner()
        self._storage: Any = None
        self._app: Any = None
        self._task: Any = None
        self._queries: Any = None
        self._watcher: Any = None
        self._pgqueuer_connection: Any = None

    # -- set-up -------------------------------------------------------------------------
    def reset(self) -> None:
        self.close()
        _sql(self.dsn, f"DROP SCHEMA IF EXISTS {self.namespace} CASCADE")
        if self.name in PYAPALIS:
            self._storage = pyapalis_storage(self.config)
            self._storage.push_sync(0)  # the first use creates the schema
            _sql(self.dsn, f"TRUNCATE {self.namespace}.tasks")
            return
        _sql(self.dsn, f"CREATE SCHEMA {self.namespace}")
        self._runner = asyncio.Runner()
        if self.name == "procrastinate":
            self._app, self._task = procrastinate_app(self.config)

            async def install_procrastinate() -> None:
                await self._app.open_async()
                await self._app.schema_manager.apply_schema_async()

            self._runner.run(install_procrastinate())
        else:

            async def install_pgqueuer() -> None:
                self._queries, self._pgqueuer_connection = await pgqueuer_queries(self.config)
                await self._queries.install(create_schema=False)

            self._runner.run(install_pgqueuer())

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self._storage is not None:
            self._storage.close()
            self._storage = None
        if self._app is not None:
            self._runner.run(self._app.close_async())
            self._app = None
        if self._queries is not None:
            self._runner.run(self._pgqueuer_connection.close())
            self._queries = None
        self._runner.close()

    # -- pushing ------------------------------------------------------------------------
    def push_bulk(self, n: int) -> None:
        for start in range(0, n, 10_000):
            items = list(range(start, min(n, start + 10_000)))
            if self.name in PYAPALIS:
                self._storage.push_bulk_sync(items)
            elif self.name == "procrastinate":
                self._runner.run(self._task.batch_defer_async(*[{"payload": i} for i in items]))
            else:
                count = len(items)
                payloads: list[bytes | None] = [str(i).encode() for i in items]
                self._runner.run(self._queries.enqueue(["noop"] * count, payloads, [0] * count))

    def push_stamped(self) -> None:
        stamp = {"t": time.time()}
        if self.name in PYAPALIS:
            self._storage.push_sync(stamp)
        elif self.name == "procrastinate":
            self._runner.run(self._task.defer_async(payload=stamp))
        else:
            self._runner.run(self._queries.enqueue("noop", json.dumps(stamp).encode()))

    def unfinished(self) -> int:
        """Tasks not yet finished, read on one session kept open (polled every 10 ms)."""
        import psycopg

        ns = self.namespace
        statement = {
            "procrastinate": f"SELECT count(*) FROM {ns}.procrastinate_jobs"
            " WHERE status IN ('todo', 'doing')",
            "pgqueuer": f"SELECT count(*) FROM {ns}.pgqueuer",
        }.get(self.name, f"SELECT count(*) FROM {ns}.tasks WHERE status IN ('Pending', 'Running')")
        if self._watcher is None or self._watcher.closed:
            self._watcher = psycopg.connect(self.dsn, autocommit=True)
        row = self._watcher.execute(statement).fetchone()
        return int(row[0]) if row else 0

    # -- processes ----------------------------------------------------------------------
    def spawn(self, role: str, **extra: Any) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.peers.postgres_peers",
                role,
                json.dumps({**self.config, **extra}),
            ],
            cwd=_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if line != "ready":
            process.kill()
            raise RuntimeError(f"{self.name} {role} did not start (said {line!r})")
        return process


def _go(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()


def _stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.close()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until(condition: Callable[[], bool], limit: float = 600.0) -> float:
    deadline = time.perf_counter() + limit
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("the queue was not drained in time")
        time.sleep(0.01)
    return time.perf_counter()


def drain(contender: Contender, n: int, workers: int) -> float:
    contender.reset()
    contender.push_bulk(n)
    processes = [contender.spawn("worker") for _ in range(workers)]
    try:
        start = time.perf_counter()
        _go(processes)
        end = _wait_until(lambda: contender.unfinished() == 0)
    finally:
        _stop(processes)
    return n / (end - start)


def one_by_one(contender: Contender, n: int, workers: int) -> tuple[float, float]:
    """(end-to-end tasks/s, the producer's pushes/s)."""
    contender.reset()
    processes = [contender.spawn("worker") for _ in range(workers)]
    try:
        _go(processes)
        producer = contender.spawn("producer", n=n)
        start = time.perf_counter()
        _go([producer])
        assert producer.stdout is not None
        pushed = float(producer.stdout.readline().split()[1])
        producer.wait(timeout=60)
        end = _wait_until(lambda: contender.unfinished() == 0)
    finally:
        _stop(processes)
    return n / (end - start), n / pushed


def pickup_latency(contender: Contender, samples: int) -> list[float]:
    contender.reset()
    (worker,) = [contender.spawn("worker")]
    latencies: list[float] = []
    try:
        _go([worker])
        assert worker.stdout is not None
        _wait_until(lambda: contender.unfinished() == 0)
        time.sleep(0.2)  # the worker is idle, waiting for a push
        for _ in range(samples):
            contender.push_stamped()
            line = worker.stdout.readline().split()
            latencies.append(float(line[1]))
            time.sleep(0.02)  # idle again before the next one
    finally:
        _stop([worker])
    return latencies


def _measure(contender: Contender, args: argparse.Namespace, n: int) -> dict[str, float]:
    """One round of every throughput scenario for ``contender``."""
    row: dict[str, float] = {}
    for workers in args.workers:
        row[f"drain_{workers}w"] = drain(contender, n, workers)
    row["one_by_one"], row["pushes"] = one_by_one(contender, min(n, args.one_by_one), 1)
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--slow-n", type=int, default=2_000, help="n for procrastinate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--one-by-one", type=int, default=2_000)
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--contenders", nargs="+", default=CONTENDERS, choices=CONTENDERS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    contenders = [
        Contender(name, args.dsn, args.batch, args.concurrency) for name in args.contenders
    ]
    rounds: dict[str, list[dict[str, float]]] = {c.name: [] for c in contenders}
    latencies: dict[str, list[float]] = {c.name: [] for c in contenders}
    try:
        # Rounds interleave the contenders, so a burst of load elsewhere on the
        # machine hits them alike; each figure is the median of its rounds.
        for _ in range(args.repeats):
            for contender in contenders:
                n = args.slow_n if contender.name == "procrastinate" else args.n
                rounds[contender.name].append(_measure(contender, args, n))
            if args.latency_samples:
                per_round = max(1, args.latency_samples // args.repeats)
                for contender in contenders:
                    latencies[contender.name] += pickup_latency(contender, per_round)
    finally:
        for contender in contenders:
            contender.close()
            _sql(args.dsn, f"DROP SCHEMA IF EXISTS {contender.namespace} CASCADE")
    report: dict[str, Any] = {"n": args.n, "slow_n": args.slow_n, "results": {}}
    for contender in contenders:
        name = contender.name
        row: dict[str, Any] = {
            key: statistics.median(r[key] for r in rounds[name]) for key in rounds[name][0]
        }
        lat = sorted(latencies[name])
        if lat:
            row["p50_ms"] = statistics.median(lat) * 1000
            row["p99_ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        report["results"][name] = row
        drains = ", ".join(f"{w} worker(s) {row[f'drain_{w}w']:8.0f}/s" for w in args.workers)
        print(
            f"{name:22} drain: {drains}; one by one {row['one_by_one']:6.0f}/s"
            + (f"; pickup p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms" if lat else "")
        )
    results = report["results"]
    peers = [results[p] for p in ("procrastinate", "pgqueuer") if p in results]
    if "pyapalis" in results and peers:
        for workers in args.workers:
            key = f"drain_{workers}w"
            best = max(peer[key] for peer in peers)
            for ours in ("pyapalis", "pyapalis-async-commit"):
                if ours in results:
                    ratio = results[ours][key] / best
                    report[f"ratio_{ours}_{key}"] = ratio
                    print(f"{ours} / the faster peer, drain with {workers} worker(s): {ratio:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
