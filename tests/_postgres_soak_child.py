"""A process of the PostgreSQL crash soak (tests/test_postgres_soak.py), killed at random.

``worker DSN SCHEMA LOG``: runs a worker whose handler appends each task's
argument to LOG (flushed) before returning, until killed.
``producer DSN SCHEMA LOG START``: pushes tasks START, START+1, ... one by one
with push_sync and appends each to LOG once the push returned (acknowledged),
until killed.
"""

from __future__ import annotations

import os
import sys

import trio

from pyapalis import PostgresStorage, WorkerBuilder


def worker(dsn: str, schema: str, log_path: str) -> None:
    log = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open until killed

    async def handler(item: int) -> None:
        log.write(f"{item}\n")
        log.flush()

    async def main() -> None:
        storage = PostgresStorage(dsn, schema=schema, lease=1.0, prefetch=4, poll=0.2)
        async with storage:
            await (
                WorkerBuilder(f"soak-{os.getpid()}")
                .backend(storage)
                .concurrency(4)
                .build(handler)
                .run()
            )

    trio.run(main)


def producer(dsn: str, schema: str, log_path: str, start: int) -> None:
    storage = PostgresStorage(dsn, schema=schema)
    with open(log_path, "a", buffering=1, encoding="utf-8") as log:
        item = start
        while True:
            storage.push_sync(item)
            log.write(f"{item}\n")
            log.flush()
            item += 1


if __name__ == "__main__":
    role, dsn, schema, log_path = sys.argv[1:5]
    if role == "worker":
        worker(dsn, schema, log_path)
    else:
        producer(dsn, schema, log_path, int(sys.argv[5]))
