"""A backend over a SQLite table, made with BackendBuilder.

The fetcher claims (deletes) up to ``buffer_size`` rows per poll and turns them
into tasks; the sink inserts pushed tasks. The worker retries a failing task
through the backend. Run it with ``python examples/custom_backend.py``.
"""

import json
import sqlite3

import trio

from pyapalis import RetryAfterError, Task, TaskBuilder, WorkerBuilder, WorkerContext
from pyapalis.backends import BackendBuilder, CustomConfig, IntervalStrategy


def open_database() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, args TEXT, max_attempts INTEGER)")
    return db


def fetch(db: sqlite3.Connection, config: CustomConfig) -> list[Task]:
    """Claim the oldest rows: a row leaves the table once a worker has its task."""
    with db:
        rows = db.execute(
            "SELECT rowid, id, args, max_attempts FROM jobs ORDER BY rowid LIMIT ?",
            (config.buffer_size,),
        ).fetchall()
        db.executemany("DELETE FROM jobs WHERE rowid = ?", [(row[0],) for row in rows])
    return [
        TaskBuilder(json.loads(args)).id(task_id).attempts(max_attempts).build()
        for _, task_id, args, max_attempts in rows
    ]


def sink(db: sqlite3.Connection, config: CustomConfig, tasks: list[Task]) -> None:
    with db:
        db.executemany(
            "INSERT INTO jobs VALUES (?, ?, ?)",
            [
                (str(task.parts.task_id), json.dumps(task.args), task.parts.max_attempts)
                for task in tasks
            ],
        )


async def main() -> None:
    db = open_database()
    backend = (
        BackendBuilder()
        .database(db)
        .fetcher(fetch)
        .sink(sink)
        .config(CustomConfig(poll=IntervalStrategy(0.05), buffer_size=2))
        .build()
    )
    for email in ("ada@example.com", "bob@example.com", "eve@example.com"):
        await backend.push_task(TaskBuilder(email).attempts(3).build())

    sent: list[str] = []

    async def send_welcome(email: str, task: Task, worker: WorkerContext) -> None:
        attempt = task.parts.attempt.current()
        if email.startswith("eve") and attempt == 1:
            print(f"mail server busy for {email}, retrying")
            raise RetryAfterError("mail server busy", 0.05)
        print(f"sent welcome email to {email} (attempt {attempt})")
        sent.append(email)
        if len(sent) == 3:
            worker.stop()

    await WorkerBuilder("mailer").backend(backend).build(send_welcome).run()
    (left,) = db.execute("SELECT COUNT(*) FROM jobs").fetchone()
    print(f"rows left in the table: {left}")


if __name__ == "__main__":
    trio.run(main)
