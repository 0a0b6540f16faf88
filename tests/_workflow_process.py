"""A worker process running a three-step workflow on a SQLite file, for
tests/test_workflow_crash.py.

Not a test module: the test runs ``python _workflow_process.py MODE PATH LOG``.
Each step appends its name to the file LOG as it runs. ``crash`` starts the run
``r1`` (input 5) and runs a worker whose second step, once it has logged,
prints ``in two`` and waits forever: the test SIGKILLs the process there,
between the first step (done) and the second (unfinished). ``finish`` is the
restart: it prints the run's status (``before <status> <step statuses>``),
recovers the dead worker's task (``resumed <n>``), runs a worker until the run
is done and prints ``result <result>``.
"""

from __future__ import annotations

import sys

import trio

from pyapalis import SqliteStorage, WorkerBuilder
from pyapalis.workflow import Workflow

MODE, PATH, LOG = sys.argv[1], sys.argv[2], sys.argv[3]


def log(step: str) -> None:
    with open(LOG, "a", encoding="utf-8") as file:
        file.write(f"{step}\n")


def one(value: int) -> int:
    log("one")
    return value + 1


async def two(value: int) -> int:
    log("two")
    if MODE == "crash":
        print("in two", flush=True)
        await trio.sleep_forever()
    return value * 2


def three(value: int) -> str:
    log("three")
    return f"done {value}"


FLOW = Workflow[int, int]("crashy").and_then(one).and_then(two).and_then(three)


async def main() -> None:
    async with SqliteStorage(PATH) as storage:
        runner = FLOW.on(storage)
        worker = WorkerBuilder("crashy").backend(storage).build(runner.handle)
        if MODE == "crash":
            await runner.start(5, run_id="r1")
            await worker.run()
            return
        status = await runner.status("r1")
        steps = ",".join(str(step.status) for step in status.steps)
        print(f"before {status.status} {steps}", flush=True)
        print(f"resumed {await storage.resume_abandoned()}", flush=True)
        result: list[str] = []

        async def until_done() -> None:
            result.append(await runner.wait("r1"))

        await worker.run_until(until_done)
        print(f"result {result[0]}", flush=True)


if __name__ == "__main__":
    trio.run(main)
