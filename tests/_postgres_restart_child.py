"""A process of the PostgreSQL restart test (tests/test_postgres_restart.py).

``worker DSN SCHEMA LOG LEASE``: runs a worker whose handler appends
``<pid> <argument>`` to LOG (flushed) before returning, until stopped. It is
never restarted: across the server's restarts it must reconnect by itself.
``producer DSN SCHEMA LOG START``: pushes tasks START, START+1, ... one by one
with push_sync and appends each to LOG once its push returned (acknowledged);
a push refused with StorageError (the server is down) was not acknowledged:
the producer waits a little and goes on with the next number.
``trio-producer DSN SCHEMA LOG START``: the same with ``await storage.push``
on the storage's pooled trio sessions.
"""

from __future__ import annotations

import os
import sys
import time

import trio

from pyapalis import PostgresStorage, StorageError, WorkerBuilder


def worker(dsn: str, schema: str, log_path: str, lease: float) -> None:
    log = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open until stopped
    pid = os.getpid()

    async def handler(item: int) -> None:
        log.write(f"{pid} {item}\n")
        log.flush()

    async def main() -> None:
        storage = PostgresStorage(dsn, schema=schema, lease=lease, prefetch=4, poll=0.5)
        async with storage:
            await (
                WorkerBuilder(f"restart-{pid}").backend(storage).concurrency(4).build(handler).run()
            )

    trio.run(main)


def producer(dsn: str, schema: str, log_path: str, start: int) -> None:
    storage = PostgresStorage(dsn, schema=schema)
    with open(log_path, "a", buffering=1, encoding="utf-8") as log:
        item = start
        while True:
            try:
                storage.push_sync(item)
            except StorageError:
                time.sleep(0.02)
            else:
                log.write(f"{item}\n")
                log.flush()
            item += 1


def trio_producer(dsn: str, schema: str, log_path: str, start: int) -> None:
    async def main() -> None:
        with open(log_path, "a", buffering=1, encoding="utf-8") as log:
            async with PostgresStorage(dsn, schema=schema) as storage:
                item = start
                while True:
                    try:
                        await storage.push(item)
                    except StorageError:
                        await trio.sleep(0.02)
                    else:
                        log.write(f"{item}\n")
                        log.flush()
                    item += 1

    trio.run(main)


if __name__ == "__main__":
    role, dsn, schema, log_path, extra = sys.argv[1:6]
    if role == "worker":
        worker(dsn, schema, log_path, float(extra))
    elif role == "producer":
        producer(dsn, schema, log_path, int(extra))
    else:
        trio_producer(dsn, schema, log_path, int(extra))
