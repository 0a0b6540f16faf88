"""A process of the Redis crash soak (``tests/test_redis_soak.py``); not a test module.

``work URL NAMESPACE EFFECTS``: resume what dead processes left, then run a
worker (concurrency 4, lease 2 s) whose handler appends ``done <item> <pid>``
to EFFECTS (one ``write`` in append mode: it survives a SIGKILL) and returns.

``produce URL NAMESPACE ACKED START``: push ints from START on, one at a time,
appending ``<item> <task id>`` to ACKED once each push has returned (the
producer was told the task is stored), until killed.
"""

from __future__ import annotations

import os
import sys

import trio

from pyapalis import RedisStorage, WorkerBuilder


def storage(url: str, namespace: str) -> RedisStorage:
    return RedisStorage(url, namespace=namespace, lease=2.0, poll=0.2, prefetch=4)


async def work(url: str, namespace: str, effects: str) -> None:
    fd = os.open(effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    pid = os.getpid()

    async def handler(item: int) -> int:
        os.write(fd, f"done {item} {pid}\n".encode())
        return item

    async with storage(url, namespace) as opened:
        await opened.resume_abandoned()
        print("ready", flush=True)
        await WorkerBuilder("soak").backend(opened).concurrency(4).build(handler).run()


async def produce(url: str, namespace: str, acked: str, start: int) -> None:
    fd = os.open(acked, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    async with storage(url, namespace) as opened:
        print("ready", flush=True)
        item = start
        while True:
            task_id = await opened.push(item)
            os.write(fd, f"{item} {task_id}\n".encode())
            item += 1


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "work":
        trio.run(work, *rest)
    else:
        trio.run(produce, rest[0], rest[1], rest[2], int(rest[3]))
