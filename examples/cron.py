"""Periodic tasks: a cron schedule whose ticks become tasks of a crash-safe file.

Run it with ``python examples/cron.py``. Every second (``* * * * * *``: six
fields, the seconds first) a tick becomes a task of a JsonStorage. Its id
derives from the schedule's name and the tick's time, so two processes
running this schedule on one backend store each tick once; and a restart with
``missed="last"`` pushes the tick it missed, unless it was pushed already.
"""

import datetime as dt

import trio

from pyapalis import CronStream, JsonStorage, Pipe, WorkerBuilder, WorkerContext

reports: list[dt.datetime] = []


async def report(tick: str, worker: WorkerContext) -> None:
    # The tick comes as ISO 8601 text with its UTC offset, the same on every backend.
    when = dt.datetime.fromisoformat(tick)
    reports.append(when)
    print(f"report for {when:%H:%M:%S}")
    if len(reports) == 2:
        worker.stop()


async def main() -> None:
    with JsonStorage.new_temp() as storage:
        schedule = CronStream("* * * * * *", tz="Europe/Berlin", name="report", missed="last")
        worker = WorkerBuilder("reports").backend(Pipe(schedule, storage)).build(report)
        await worker.run()
        done = await storage.list_tasks(page_size=100)
        print(f"two reports, {(reports[1] - reports[0]).total_seconds()} s apart")
        # Pushing a tick again (another process running the schedule) stores nothing.
        again = CronStream("* * * * * *", tz="Europe/Berlin", name="report")
        tick = dt.datetime.fromisoformat(done[0].args)
        assert again.tick_id(tick) == done[0].parts.task_id
        await storage.push_task(done[0])
        stored = len(await storage.list_tasks(page_size=100))
        print(f"pushed {again.tick_id(tick)} again: {stored - len(done)} new tasks")


if __name__ == "__main__":
    trio.run(main)
