"""A process running a cron schedule on a JsonStorage file, for tests/test_cron_processes.py.

Not a test module: the tests run it with ``sys.executable`` as
``python _cron_process.py PATH START RUNS MISSED``. It runs in virtual time
(trio's ``MockClock`` with autojump, ``time.time()`` a ``WallClock`` starting at
UNIX seconds START), so it takes no real time and its ticks are exact. Its
worker consumes ``Pipe(CronStream("* * * * *", name="report", missed=MISSED),
JsonStorage(PATH))`` and stops after RUNS executions; it prints one line per
execution (``ran <tick>``), then ``stored <n>`` (the tasks in the file).
``vacuum PATH`` vacuums the file instead and prints ``vacuumed <n>``.
"""

from __future__ import annotations

import sys

import trio
import trio.testing

from pyapalis import CronStream, JsonStorage, Pipe, WorkerBuilder, WorkerContext
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


def main() -> None:
    if sys.argv[1] == "vacuum":
        trio.run(vacuum, sys.argv[2])
        return
    path, start, runs, missed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    clock = trio.testing.MockClock(autojump_threshold=0)
    with WallClock(start=start, clock=clock).installed():
        trio.run(run, path, runs, missed, clock=clock)


if __name__ == "__main__":
    main()
