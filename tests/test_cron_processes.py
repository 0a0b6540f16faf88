"""A schedule run by one process after another on one JsonStorage: each tick runs once.

Two processes cannot hold one JsonStorage file at once (one process per file),
so this is the restart story: each process runs ``Pipe(CronStream(...,
missed="last"), storage)`` for a while and exits; the next one, started later,
pushes the tick it finds missed. A tick a previous process pushed — and ran to
completion, and even vacuumed — is stored again by nobody, because its id
derives from the schedule's name and the tick. Every process runs in virtual
time from a chosen wall-clock start (see ``tests/_cron_process.py``).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson

HELPER = str(Path(__file__).resolve().parent / "_cron_process.py")
UTC = dt.UTC


def test_two_processes_running_one_schedule_on_sqlite_run_each_tick_once(
    tmp_path: Path,
) -> None:
    """Two processes run the same every-second schedule on one SQLite file at once, on
    the real clock, until three ticks are done: both push every tick, each runs once."""
    path = str(tmp_path / "cron.db")
    procs = [
        subprocess.Popen(
            [sys.executable, HELPER, "shared", path, "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr
        assert stderr == ""
    ran = [line for stdout, _ in outputs for line in stdout.splitlines()]
    assert len(ran) == len(set(ran)), ran  # no tick ran twice
    assert len(ran) >= 3
    with sqlite3.connect(path) as db:
        done = [row[0] for row in db.execute("SELECT args FROM tasks WHERE status = 'Done'")]
        ids = [row[0] for row in db.execute("SELECT id FROM tasks")]
    assert sorted(f"ran {orjson.loads(args)}" for args in done) == sorted(ran)
    assert all(task_id.startswith("cron:shared:") for task_id in ids)


def process(*args: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, HELPER, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout.splitlines()


def schedule_from(path: Path, hour: int, minute: int, second: int, runs: int) -> list[str]:
    start = dt.datetime(2026, 5, 4, hour, minute, second, tzinfo=UTC).timestamp()
    return process(str(path), repr(start), str(runs), "last")


def test_each_tick_runs_once_across_restarts_and_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "cron.jsonl"
    # Process 1 starts at 12:00:30: catches up 12:00 (missed: nothing ran), then 12:01.
    assert schedule_from(path, 12, 0, 30, runs=2) == [
        "ran 2026-05-04T12:00:00+00:00",
        "ran 2026-05-04T12:01:00+00:00",
        "stored 2",
    ]
    # Process 2 restarts at 12:01:10: its catch-up of 12:01 stores nothing (done already).
    assert schedule_from(path, 12, 1, 10, runs=1) == ["ran 2026-05-04T12:02:00+00:00", "stored 3"]
    # Process 3 starts at 12:05:30, after a gap: the last missed tick (12:05) only.
    assert schedule_from(path, 12, 5, 30, runs=1) == ["ran 2026-05-04T12:05:00+00:00", "stored 4"]
    # Vacuum drops the finished ticks but remembers their ids.
    assert process("vacuum", str(path)) == ["vacuumed 4"]
    # Process 4 restarts at 12:05:40: 12:05 was vacuumed, and is not reopened.
    assert schedule_from(path, 12, 5, 40, runs=1) == ["ran 2026-05-04T12:06:00+00:00", "stored 1"]
