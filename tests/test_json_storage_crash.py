"""JsonStorage survives its worker process being SIGKILLed (the delivery rules, issue 4).

A worker process (``tests/_crash_worker.py``) is killed mid-task; another
process resumes the abandoned work and every task completes: none lost, none
completed twice except one that was in flight when its process died
(at-least-once). These tests run real processes on the real clock; they wait on
the worker's output markers, never on sleeps.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from pyapalis._status import Status
from pyapalis.backends._json._storage import JsonStorage

WORKER = str(Path(__file__).with_name("_crash_worker.py"))
REPO = str(Path(__file__).resolve().parent.parent)


class Worker:
    """A ``_crash_worker.py work`` process and its output so far."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.buffer = b""
        self.lines: list[str] = []

    @classmethod
    async def start(cls, path: Path, effects: Path, *options: str) -> Worker:
        env = dict(os.environ, PYTHONPATH=REPO)
        process = await trio.lowlevel.open_process(
            [sys.executable, WORKER, "work", str(path), str(effects), *options],
            stdout=subprocess.PIPE,
            env=env,
        )
        return cls(process)

    async def read_until(self, predicate: object) -> str:
        """The first output line (from now on) for which ``predicate(line)`` holds."""
        assert callable(predicate)
        assert self.process.stdout is not None
        with trio.fail_after(30):
            while True:
                while b"\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\n", 1)
                    text = line.decode()
                    self.lines.append(text)
                    if predicate(text):
                        return text
                chunk = await self.process.stdout.receive_some()
                if not chunk:
                    raise AssertionError(f"the worker exited; its output: {self.lines}")
                self.buffer += chunk

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert await self.process.wait() == -signal.SIGKILL

    async def finish(self) -> None:
        """Wait for a clean exit after ``all done``."""
        await self.read_until(lambda line: line == "all done")
        with trio.fail_after(30):
            assert await self.process.wait() == 0
        assert self.process.stdout is not None
        await self.process.stdout.aclose()


def read_effects(effects: Path) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """``(item, attempt, pid)`` of each start and ``(item, pid)`` of each completion."""
    starts: list[tuple[int, int, int]] = []
    dones: list[tuple[int, int]] = []
    for line in effects.read_text().splitlines():
        kind, *numbers = line.split()
        if kind == "start":
            item, attempt, pid = map(int, numbers)
            starts.append((item, attempt, pid))
        else:
            item, pid = map(int, numbers)
            dones.append((item, pid))
    return starts, dones


async def test_killed_worker_mid_task_is_resumed_by_a_new_process(tmp_path: Path) -> None:
    path, effects = tmp_path / "tasks.jsonl", tmp_path / "effects.log"
    with JsonStorage(path) as storage:
        ids = await storage.push_bulk(range(10))

    worker = await Worker.start(path, effects, "--block", "5")
    await worker.read_until(lambda line: line == "blocking 5")
    await worker.kill()  # mid-task: task 5 is Running in the file
    killed = worker.process.pid

    # This test process is the new process: the dead worker's lock is gone.
    with JsonStorage(path) as storage:
        [running] = await storage.check_status([ids[5]])
        assert running.status is Status.Running
        assert await storage.resume_abandoned() == 1
        task = await storage.fetch_by_id(ids[5])
        assert task is not None
        assert task.parts.status is Status.Pending
        assert task.parts.attempt.current() == 1, "the dead execution counts"

    worker = await Worker.start(path, effects)
    await worker.read_until(lambda line: line == "resumed 0")
    await worker.finish()

    starts, dones = read_effects(effects)
    assert sorted(item for item, _ in dones) == list(range(10)), "each completed exactly once"
    assert [(item, attempt, pid) for item, attempt, pid in starts if item == 5] == [
        (5, 1, killed),
        (5, 2, worker.process.pid),
    ]
    assert [item for item, _, pid in starts if pid == killed] == [0, 1, 2, 3, 4, 5]
    with JsonStorage(path) as storage:
        results = await storage.check_status(ids)
        assert [r.status for r in results] == [Status.Done] * 10
        assert [r.unwrap() for r in results] == [2 * n for n in range(10)]
        task = await storage.fetch_by_id(ids[5])
        assert task is not None and task.parts.attempt.current() == 2
        assert storage.report.torn_tail is None


@pytest.mark.slow
async def test_repeated_kills_at_random_points_lose_nothing(tmp_path: Path) -> None:
    """At least 20 kills at random moments (compaction included), then a clean finish."""
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    seed = rng.randrange(2**32)
    rng.seed(seed)
    concurrency, total = 4, 600
    path, effects = tmp_path / "tasks.jsonl", tmp_path / "effects.log"
    with JsonStorage(path) as storage:
        ids = await storage.push_bulk(range(total))
    options = ("--concurrency", str(concurrency), "--pause", "0.002", "--compact-min", "40")

    killed: set[int] = set()
    for _ in range(20):
        worker = await Worker.start(path, effects, *options)
        await worker.read_until(lambda line: line.startswith("resumed "))
        if rng.random() < 0.2:
            # Early: while it resumes, starts up its worker, takes its first tasks.
            await trio.sleep(rng.uniform(0, 0.01))
        else:
            starts = rng.randint(1, 25)
            for _ in range(starts):
                await worker.read_until(lambda line: line.startswith("start "))
            await trio.sleep(rng.uniform(0, 0.003))
        await worker.kill()
        killed.add(worker.process.pid)

    worker = await Worker.start(path, effects, *options)
    await worker.finish()

    starts_seen, dones = read_effects(effects)
    completions = collections.Counter(item for item, _ in dones)
    assert sorted(completions) == list(range(total)), f"lost tasks (seed {seed})"
    # At-least-once: a task completes twice only if a killed process had
    # completed it without its ack reaching the file: at most `concurrency`
    # such tasks per killed process.
    repeated = collections.Counter(
        pid for item, pid in dones if completions[item] > 1 and pid in killed
    )
    assert all(count <= concurrency for count in repeated.values()), (repeated, seed)
    for item, count in completions.items():
        if count > 1:
            completed_by = [pid for done_item, pid in dones if done_item == item]
            assert all(pid in killed for pid in completed_by[:-1]), (item, completed_by, seed)
    with JsonStorage(path) as storage:
        results = await storage.check_status(ids)
        assert {r.status for r in results} == {Status.Done}, seed
        assert [r.unwrap() for r in results] == [2 * n for n in range(total)], seed
        assert len(storage) == 0
    assert not list(tmp_path.glob("tasks.jsonl.compact*"))
    assert len(killed) == 20
    assert starts_seen
