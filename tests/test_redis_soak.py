"""The Redis crash soak: SIGKILL at random moments across two workers and a producer.

At least 100 rounds: each round kills one of the three processes (a worker
mid-work, or the producer mid-push) at a random moment and starts it again.
Then two fresh workers drain the queue. Every task whose push returned
(acknowledged to the producer) must end Done: none lost. A task may run twice
only because a worker died holding it, so the tasks that ran more than once
are at most the kills of workers times what one worker holds (its
concurrency plus its prefetch). Real processes on the real clock (slow mark).
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from _redis_support import REDIS_URL, drop_namespace, needs_redis, new_namespace

from pyapalis import RedisStorage, Status

PROCESS = str(Path(__file__).with_name("_redis_soak_process.py"))
REPO = str(Path(__file__).resolve().parent.parent)
ROUNDS = int(os.environ.get("PYAPALIS_SOAK_ROUNDS", "100"))
HELD = 4 + 4  # a worker's concurrency plus its prefetch


async def start(*args: str) -> trio.Process:
    process = await trio.lowlevel.open_process(
        [sys.executable, PROCESS, *args],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert process.stdout is not None
    with trio.fail_after(60):
        buffer = b""
        while b"ready" not in buffer:
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise RuntimeError(f"{args[0]} process ended before it was ready")
            buffer += chunk
    return process


async def kill(process: trio.Process) -> None:
    process.kill()
    await process.wait()


@pytest.mark.slow
@needs_redis
async def test_sigkill_soak_loses_nothing_acknowledged(tmp_path: Path) -> None:
    namespace = new_namespace()
    effects, acked = tmp_path / "effects", tmp_path / "acked"
    rng = random.Random(16)
    worker_kills = 0
    try:
        workers = [await start("work", REDIS_URL, namespace, str(effects)) for _ in range(2)]
        producer = await start("produce", REDIS_URL, namespace, str(acked), "0")
        for _ in range(ROUNDS):
            await trio.sleep(rng.uniform(0.02, 0.3))
            victim = rng.randrange(3)
            if victim < 2:
                await kill(workers[victim])
                worker_kills += 1
                workers[victim] = await start("work", REDIS_URL, namespace, str(effects))
            else:
                await kill(producer)
                pushed = acked.read_text().splitlines() if acked.exists() else []
                producer = await start(
                    "produce", REDIS_URL, namespace, str(acked), str(len(pushed) + 10_000_000)
                )
        await kill(producer)
        for process in workers:
            await kill(process)
        # Two fresh workers drain what is left (their start resumes the dead ones' tasks).
        workers = [await start("work", REDIS_URL, namespace, str(effects)) for _ in range(2)]
        ids = [line.split()[1] for line in acked.read_text().splitlines()]
        assert len(ids) > ROUNDS, "the producer hardly pushed anything"
        async with RedisStorage(REDIS_URL, namespace=namespace) as storage:
            with trio.fail_after(120):
                while True:
                    results = await storage.check_status(ids)  # KeyError = a lost task
                    if all(result.status is Status.Done for result in results):
                        break
                    await trio.sleep(0.2)
        for process in workers:
            await kill(process)
        runs = collections.Counter(
            line.split()[1] for line in effects.read_text().splitlines() if line
        )
        items = [line.split()[0] for line in acked.read_text().splitlines()]
        assert all(runs[item] >= 1 for item in items), "an acknowledged task never ran"
        twice = [item for item, count in runs.items() if count > 1]
        print(
            f"soak: {ROUNDS} rounds, {worker_kills} worker kills, {len(items)} acknowledged "
            f"tasks, 0 lost, {len(twice)} ran more than once"
        )
        assert len(twice) <= worker_kills * HELD, (len(twice), worker_kills)
    finally:
        await drop_namespace(REDIS_URL, namespace)
