"""A worker process on a JsonStorage file, for the tests that need a second process.

Not a test module: the tests run it with ``sys.executable`` and talk to it
through its standard streams. Two modes:

``hold PATH``
    Open the storage, print ``ready <pid>``, and keep the file until standard
    input closes (the lock test).

``probe PATH [--user UID]``
    Try to open the storage (as user UID if given: the process drops root
    first) and print ``opened <tasks>`` or ``refused <message>`` (the lock and
    permission tests).

``work PATH EFFECTS [--concurrency N] [--block ITEM] [--pause SECONDS] [--compact-min N]``
    Open the storage, resume abandoned tasks (prints ``resumed <n>``), print
    ``ready``, then run a worker until no task of the queue is left
    unfinished, and print ``all done``. The handler takes an int, appends
    ``start <item> <attempt> <pid>`` to the EFFECTS file and prints
    ``start <item>``; it then sleeps up to ``--pause`` seconds (random), appends
    ``done <item> <pid>`` and returns ``item * 2``. With ``--block ITEM``, the
    first execution of that item prints ``blocking <item>`` and never ends
    (the test kills the process there). EFFECTS lines are single ``write``
    calls in append mode, so they survive the process being killed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

import trio

from pyapalis._errors import StorageError
from pyapalis._implementation import Attempt
from pyapalis._worker._context import WorkerContext
from pyapalis._worker._events import Event, EventKind
from pyapalis._worker._worker import WorkerBuilder
from pyapalis.backends._json._storage import JsonStorage


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def hold(path: str) -> None:
    with JsonStorage(path):
        say(f"ready {os.getpid()}")
        await trio.to_thread.run_sync(sys.stdin.read)


def probe(path: str, user: int | None) -> None:
    if user is not None:
        os.setgroups([])
        os.setgid(user)
        os.setuid(user)
    try:
        storage = JsonStorage(path)
    except StorageError as error:
        say(f"refused {error}")
        return
    with storage:
        say(f"opened {len(storage)}")


async def work(options: argparse.Namespace) -> None:
    pid = os.getpid()
    effects = os.open(options.effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with JsonStorage(options.path, compact_min=options.compact_min) as storage:
        say(f"resumed {await storage.resume_abandoned()}")
        if len(storage) == 0:
            say("all done")
            return
        say("ready")

        async def handler(item: int, attempt: Attempt) -> int:
            os.write(effects, f"start {item} {attempt.current()} {pid}\n".encode())
            say(f"start {item}")
            if item == options.block and attempt.current() == 1:
                say(f"blocking {item}")
                await trio.sleep_forever()
            if options.pause:
                await trio.sleep(random.uniform(0, options.pause))
            os.write(effects, f"done {item} {pid}\n".encode())
            return item * 2

        def on_event(ctx: WorkerContext, event: Event) -> None:
            finished = event.kind in (EventKind.Success, EventKind.Error)
            if finished and len(storage) == 0 and not ctx.is_shutting_down:
                ctx.stop()

        worker = (
            WorkerBuilder("crash-worker")
            .backend(storage)
            .concurrency(options.concurrency)
            .on_event(on_event)
            .build(handler)
        )
        await worker.run()
    say("all done")


def main() -> None:
    parser = argparse.ArgumentParser()
    modes = parser.add_subparsers(dest="mode", required=True)
    hold_mode = modes.add_parser("hold")
    hold_mode.add_argument("path")
    probe_mode = modes.add_parser("probe")
    probe_mode.add_argument("path")
    probe_mode.add_argument("--user", type=int, default=None)
    work_mode = modes.add_parser("work")
    work_mode.add_argument("path")
    work_mode.add_argument("effects")
    work_mode.add_argument("--concurrency", type=int, default=1)
    work_mode.add_argument("--block", type=int, default=None)
    work_mode.add_argument("--pause", type=float, default=0.0)
    work_mode.add_argument("--compact-min", type=int, default=10_000)
    options = parser.parse_args()
    if options.mode == "hold":
        trio.run(hold, options.path)
    elif options.mode == "probe":
        probe(options.path, options.user)
    else:
        trio.run(work, options)


if __name__ == "__main__":
    main()
