"""Typed background tasks (backie style): task types, queues, retries, time limits,
uniqueness, app data and retention.

Run it with ``python examples/background_tasks.py``.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import trio

from pyapalis import BackgroundTask, BackoffMode, CurrentTask, SqliteStorage, TaskHash, WorkerPool
from pyapalis.typed import QueueConfig, RetentionMode


@dataclass
class App:
    """What every task gets as ``app``: here, a setting and a mail outbox."""

    max_width: int
    outbox: list[str]


class ResizeImage(BackgroundTask):
    TASK_NAME = "resize-image"
    QUEUE = "images"

    path: str

    async def run(self, task: CurrentTask, app: App) -> str:
        print(f"resize {self.path} -> {app.max_width}px")
        return f"resized {self.path}"

    def uniq(self) -> TaskHash | None:
        return TaskHash.default_for_task(self)  # one pending resize per path


class SendEmail(BackgroundTask):
    TASK_NAME = "send-email"
    QUEUE = "emails"
    MAX_RETRIES = 2
    BACKOFF_MODE = BackoffMode.constant(0.05)
    TIMEOUT = 10  # seconds per execution (backie's timeout_msecs); None: no limit

    to: str
    subject: str

    async def run(self, task: CurrentTask, app: App) -> str:
        if task.attempt == 1:
            raise ConnectionError("mail server busy")  # retried after 0.05 s
        print(f"email to {self.to}: {self.subject} (attempt {task.attempt})")
        app.outbox.append(self.to)
        return "sent"


async def main() -> None:
    # The persistent default: a SQLite file many processes can share (here a
    # temporary one; a real app keeps e.g. SqliteStorage("tasks.db")).
    outbox: list[str] = []
    with tempfile.TemporaryDirectory() as directory:
        async with SqliteStorage(Path(directory) / "tasks.db") as storage:
            await run(storage, outbox)


async def run(storage: SqliteStorage, outbox: list[str]) -> None:
    """Enqueue, dedupe, run the pool until every task finished, print the results."""
    ids = [
        await ResizeImage("photo.jpg").enqueue(storage),
        await SendEmail("ann@example.org", "welcome").enqueue(storage),
        await ResizeImage("cat.png").enqueue(storage),
    ]
    again = await ResizeImage("photo.jpg").enqueue(storage)
    print("duplicate enqueue returned the same id:", again == ids[0])

    pool = (
        WorkerPool(storage, app_data=lambda: App(max_width=800, outbox=outbox))
        .register_task_type(ResizeImage)
        .register_task_type(SendEmail)
        # SqliteStorage can delete tasks, so a queue's default retention is backie's
        # RemoveDone; keep them here to read their results below.
        .configure_queue(QueueConfig("images", num_workers=2, retention=RetentionMode.KeepAll))
        .configure_queue("emails", retention=RetentionMode.KeepAll)
    )

    async def all_finished() -> None:
        async for _ in storage.wait_for(ids):
            pass

    await pool.run_until(all_finished)
    results = await storage.check_status(ids)
    print("results:", [result.unwrap() for result in results])


if __name__ == "__main__":
    trio.run(main)
