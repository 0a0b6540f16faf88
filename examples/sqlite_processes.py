"""Several processes on one SQLite file: a producer outside trio and two worker processes.

Run it with ``python examples/sqlite_processes.py``. The main process starts
two worker processes (this same file with ``--worker PATH``), pushes tasks
with ``push_sync`` from plain code (as a Django or Flask view would), waits
for their results, and stops the workers with SIGTERM (a graceful stop).
Each task runs once, in one of the two workers.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from pyapalis import Monitor, SqliteStorage, WorkerBuilder


async def square(number: int) -> dict[str, int]:
    await trio.sleep(0.01)  # some work, so both workers get a share
    return {"square": number * number, "pid": os.getpid()}


async def run_worker(path: str) -> None:
    """A worker process: run until SIGINT/SIGTERM, then finish in-flight tasks and exit 0."""
    storage = SqliteStorage(path)
    worker = WorkerBuilder("squares").backend(storage).concurrency(4).build(square)
    await Monitor().register(worker).run_with_signal()
    await storage.aclose()


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "tasks.db")
        workers = [subprocess.Popen([sys.executable, __file__, "--worker", path]) for _ in range(2)]
        storage = SqliteStorage(path)

        async def both_workers_up() -> None:
            async with storage.queue("default") as handle:  # list_workers: who is alive
                while len(await handle.list_workers()) < 2:
                    await trio.sleep(0.01)

        trio.run(both_workers_up)
        started = time.monotonic()
        ids = [storage.push_sync(number) for number in range(40)]  # plain code, no trio

        async def results() -> list[dict[str, int]]:
            return [result.unwrap() for result in await _all(storage, ids)]

        values = trio.run(results)
        storage.close()
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait() for worker in workers]
        print(f"40 tasks done in {time.monotonic() - started:.2f} s")
        print("squares correct:", [v["square"] for v in values] == [n * n for n in range(40)])
        print("worker processes that ran tasks:", len({v["pid"] for v in values}))
        print("workers exited with", codes)


async def _all(storage: SqliteStorage, ids: list) -> list:  # type: ignore[type-arg]
    by_id = {}
    async for result in storage.wait_for(ids):  # results written by the other processes
        by_id[result.task_id] = result
    return [by_id[task_id] for task_id in ids]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        trio.run(run_worker, sys.argv[2])
    else:
        main()
