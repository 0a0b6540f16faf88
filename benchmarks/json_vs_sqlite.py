"""JsonStorage against a plain sqlite3 loop: the cost of durability (issue 4, Measure).

Run ``python -m benchmarks.json_vs_sqlite [--n 10000] [--acks 200]``. In one
run, on the same file system, it measures:

* **JsonStorage**: ``push_bulk`` of ``n`` tasks (one write, one fsync), then a
  worker drains them (each final status fsynced before it is acknowledged;
  concurrent acks share an fsync). Reported as tasks/s for push + drain, at
  concurrency 1 (an fsync per task) and 100 (group commit).
* **one durable ack**: a task taken, then ``ack(Done)`` awaited alone: the
  median time until the status is on disk.

  JsonStorage fsyncs in a worker thread, so the event loop never blocks on
  the disk; that costs a thread hop per fsync. sqlite3 here fsyncs on the
  calling thread. The rows marked "fsync inline" run JsonStorage that way
  too (a private switch of its journal), to show the hop's share.
* **sqlite3 yardstick**: the same work as a plain loop with the standard
  library, ``synchronous=FULL`` (fsync at every commit), in WAL and in the
  default rollback-journal mode: ``n`` INSERTs in one transaction, then per
  task an UPDATE to Running and an UPDATE to Done with its result, each
  committed on its own (durable like JsonStorage's acks), and the median time
  of one such committed UPDATE.

fsync cost depends on the disk: compare rows of one run, not across machines.
pyapalis is imported inside the functions (see ``benchmarks._support``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import trio

__all__ = [
    "Row",
    "json_storage_ack",
    "json_storage_push_and_drain",
    "main",
    "run",
    "sqlite_ack",
    "sqlite_insert_and_update",
]

now = time.perf_counter


@dataclasses.dataclass
class Row:
    """One line of the table: what was measured and how fast."""

    name: str
    tasks_per_second: float | None = None
    push_seconds: float | None = None
    ack_microseconds: float | None = None


# -- JsonStorage ------------------------------------------------------------------


async def push_and_drain(
    path: str, n: int, concurrency: int, inline: bool | None = None
) -> tuple[float, float]:
    """``push_bulk`` of ``n`` ints into a new JsonStorage, then a worker drains them.

    Returns (push seconds, push + drain seconds). ``inline``: see the module doc.
    """
    from pyapalis import WorkerBuilder
    from pyapalis.backends._json._storage import JsonStorage

    count = 0
    with JsonStorage(path) as storage:
        storage._store.journal.inline_sync = inline

        async def handler(item: int) -> int:
            nonlocal count
            count += 1
            if count == n:
                worker.context.stop()  # returns once the in-flight acks are on disk
            return item

        worker = WorkerBuilder("bench").backend(storage).concurrency(concurrency).build(handler)
        start = now()
        await storage.push_bulk(range(n))
        pushed = now()
        await worker.run()
        finished = now()
        if len(storage) != 0:
            raise RuntimeError(f"{len(storage)} tasks left unfinished")
    return pushed - start, finished - start


def json_storage_push_and_drain(
    directory: str, n: int, concurrency: int, inline: bool | None = None
) -> Row:
    path = os.path.join(directory, f"json-c{concurrency}-{inline}.jsonl")
    push_seconds, total = trio.run(push_and_drain, path, n, concurrency, inline)
    name = f"JsonStorage push_bulk + drain, c={concurrency}" + (", fsync inline" if inline else "")
    return Row(name, n / total, push_seconds)


async def durable_acks(path: str, acks: int, inline: bool | None = None) -> list[float]:
    """Seconds each of ``acks`` lone ``ack(Done)`` calls took (take, then ack)."""
    from pyapalis._status import Status
    from pyapalis.backends._json._storage import JsonStorage

    samples = []
    with JsonStorage(path) as storage:
        storage._store.journal.inline_sync = inline
        await storage.push_bulk(range(acks))
        for _ in range(acks):
            task = storage.take_nowait()
            assert task is not None
            task.parts.attempt.increment()  # as the worker does when it starts a task
            start = now()
            await storage.ack(task, Status.Done, task.args, None)
            samples.append(now() - start)
    return samples


def json_storage_ack(directory: str, acks: int, inline: bool | None = None) -> Row:
    path = os.path.join(directory, f"json-ack-{inline}.jsonl")
    samples = trio.run(durable_acks, path, acks, inline)
    name = "JsonStorage: one durable ack" + (", fsync inline" if inline else "")
    return Row(name, ack_microseconds=statistics.median(samples) * 1e6)


# -- sqlite3 --------------------------------------------------------------------------


def _connect(path: str, journal_mode: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)  # autocommit: one txn per statement
    connection.execute(f"PRAGMA journal_mode={journal_mode}")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, args TEXT NOT NULL, status TEXT NOT NULL,"
        " attempts INTEGER NOT NULL, result TEXT, run_at REAL NOT NULL)"
    )
    return connection


def sqlite_insert_and_update(directory: str, n: int, journal_mode: str) -> Row:
    """n INSERTs in one transaction; then per task two committed UPDATEs (take, done)."""
    path = os.path.join(directory, f"sqlite-{journal_mode.lower()}.db")
    connection = _connect(path, journal_mode)
    try:
        start = now()
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO tasks (id, args, status, attempts, run_at) VALUES (?, ?, 'Pending', 0, ?)",
            ((i, str(i), time.time()) for i in range(n)),
        )
        connection.execute("COMMIT")
        pushed = now()
        for i in range(n):
            connection.execute(
                "UPDATE tasks SET status='Running', attempts=attempts+1 WHERE id=?", (i,)
            )
            connection.execute("UPDATE tasks SET status='Done', result=? WHERE id=?", (str(i), i))
        finished = now()
    finally:
        connection.close()
    return Row(
        f"sqlite3 {journal_mode} synchronous=FULL: insert + 2 updates/task",
        n / (finished - start),
        pushed - start,
    )


def sqlite_ack(directory: str, acks: int, journal_mode: str) -> Row:
    """The median time of one committed ``UPDATE ... status='Done'``."""
    path = os.path.join(directory, f"sqlite-ack-{journal_mode.lower()}.db")
    connection = _connect(path, journal_mode)
    samples = []
    try:
        connection.executemany(
            "INSERT INTO tasks (id, args, status, attempts, run_at) VALUES (?, ?, 'Running', 1, 0)",
            ((i, str(i)) for i in range(acks)),
        )
        for i in range(acks):
            start = now()
            connection.execute("UPDATE tasks SET status='Done', result=? WHERE id=?", (str(i), i))
            samples.append(now() - start)
    finally:
        connection.close()
    return Row(
        f"sqlite3 {journal_mode} synchronous=FULL: one durable update",
        ack_microseconds=statistics.median(samples) * 1e6,
    )


# -- the run -------------------------------------------------------------------------


def run(
    n: int = 10_000,
    acks: int = 200,
    directory: str | None = None,
    progress: Callable[[str], Any] | None = None,
) -> list[Row]:
    """Measure every row (in a new temporary directory under ``directory``)."""
    workdir = tempfile.mkdtemp(prefix="pyapalis-bench-", dir=directory)
    steps: list[tuple[str, Callable[[], Row]]] = [
        ("JsonStorage c=1", lambda: json_storage_push_and_drain(workdir, n, 1)),
        ("JsonStorage c=100", lambda: json_storage_push_and_drain(workdir, n, 100)),
        ("JsonStorage c=1 inline", lambda: json_storage_push_and_drain(workdir, n, 1, True)),
        ("JsonStorage ack", lambda: json_storage_ack(workdir, acks)),
        ("JsonStorage ack inline", lambda: json_storage_ack(workdir, acks, True)),
        ("sqlite3 WAL", lambda: sqlite_insert_and_update(workdir, n, "WAL")),
        ("sqlite3 DELETE", lambda: sqlite_insert_and_update(workdir, n, "DELETE")),
        ("sqlite3 WAL ack", lambda: sqlite_ack(workdir, acks, "WAL")),
        ("sqlite3 DELETE ack", lambda: sqlite_ack(workdir, acks, "DELETE")),
    ]
    rows = []
    try:
        for label, step in steps:
            if progress is not None:
                progress(f"measuring {label} ...")
            rows.append(step())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def table(rows: list[Row]) -> str:
    """The rows as a small aligned text table."""
    header = ("", "tasks/s", "push_bulk (s)", "µs per durable ack")
    lines = [
        (
            row.name,
            f"{row.tasks_per_second:,.0f}" if row.tasks_per_second is not None else "",
            f"{row.push_seconds:.3f}" if row.push_seconds is not None else "",
            f"{row.ack_microseconds:,.0f}" if row.ack_microseconds is not None else "",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(4)]
    out = []
    for number, line in enumerate([header, *lines]):
        out.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(line)
            )
        )
        if number == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="tasks per throughput run")
    parser.add_argument("--acks", type=int, default=200, help="samples of one durable ack")
    parser.add_argument("--dir", default=None, help="where to put the files (default: /tmp)")
    options = parser.parse_args(argv)
    if options.n < 1 or options.acks < 1:
        parser.error("--n and --acks must be >= 1")
    rows = run(options.n, options.acks, options.dir, lambda text: print(text, file=sys.stderr))
    from pyapalis._implementation import IMPLEMENTATION

    print(
        f"n = {options.n:,} tasks; pyapalis core: {IMPLEMENTATION}; Python {sys.version.split()[0]}"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
