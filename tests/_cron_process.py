"""A process running a cron schedule on a JsonStorage file, for tests/test_cron_processes.py.

Not a test module: the tests run it with ``sys.executable`` as
``python _cron_process.py PATH START RUNS MISSED``. It runs in virtual time
(trio's ``MockClock`` with autojump, ``time.time()`` a ``WallClock`` starting at
UNIX seconds START), so it takes no real time and its ticks are exact. Its
worker consumes ``Pipe(CronStream("* * * * *", name="report", missed=MISSED),
JsonStorage(PATH))`` and stops after RUNS executions; it prints one line per
execution (``ran <tick>``), then ``stored <n>`` (the tasks in the file).
``vacuum PATH`` vacuums the file instead and prints ``vacuumed <n>``.

``shared PATH COUNT`` runs on the real clock against the SqliteStorage file
PATH, beside another process doing the same: ``Pipe(CronStream("* * * * * *",
name="shared"), storage)`` until COUNT ticks of the file are Done (whoever ran
them), printing ``ran <tick>`` for each tick this process ran.
"""

from __future__ import annotations

import sys

import trio
import trio.testing

from pyapalis import (
    CronStream,
    JsonStorage,
    Pipe,
    SqliteStorage,
    Status,
    WorkerBuilder,
    WorkerContext,
)
from pyapalis.testing import WallClock


async def run(path: str, runs: int, missed: str) -> None:
    count = 0

    async def report(tick: str, worker: WorkerContext) -> None:
        nonlocal count
        print(f"ran {tick}", flush=True)
        count += 1
        if count == runs:
            worker.stop()

    with JsonStorage(path) as storage:
        schedule = CronStream("* * * * *", name="report", missed=missed)  # type: ignore[arg-type]
        await WorkerBuilder("reports").backend(Pipe(schedule, storage)).build(report).run()
        print(f"stored {len(await storage.list_tasks(page_size=100))}", flush=True)


async def vacuum(path: str) -> None:
    with JsonStorage(path) as storage:
        print(f"vacuumed {await storage.vacuum()}", flush=True)


async def shared(path: str, count: int) -> None:
    async def report(tick: str) -> None:
        print(f"ran {tick}", flush=True)

    async with SqliteStorage(path) as storage:

        async def until_done() -> None:
            # Stop once COUNT ticks are Done in the file, whichever process ran them.
            while len(await storage.list_tasks(status=Status.Done, page_size=100)) < count:
                await trio.sleep(0.05)

        schedule = CronStream("* * * * * *", name="shared")
        worker = WorkerBuilder("shared").backend(Pipe(schedule, storage)).build(report)
        await worker.run_until(until_done)


def main() -> None:
    if sys.argv[1] == "shared":
        trio.run(shared, sys.argv[2], int(sys.argv[3]))
        return
    if sys.argv[1] == "vacuum":
        trio.run(vacuum, sys.argv[2])
        return
    path, start, runs, missed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    clock = trio.testing.MockClock(autojump_threshold=0)
    with WallClock(start=start, clock=clock).installed():
        trio.run(run, path, runs, missed, clock=clock)


if __name__ == "__main__":
    main()
