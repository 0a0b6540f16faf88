"""The seed's monitor example: several workers on one storage, under one Monitor.

Run it with ``python examples/monitor.py``. It stops by itself once every task
is done; Ctrl-C (or SIGTERM) stops it earlier: the first signal lets in-flight
tasks finish, a second one cancels them and hands them back to the storage.
"""

import trio

from pyapalis import Event, EventKind, MemoryStorage, Monitor, WorkerBuilder, WorkerContext

TASKS = 6


async def square(item: int, worker: WorkerContext) -> int:
    await trio.sleep(0.05)
    print(f"squared {item} = {item * item}")
    return item * item


async def main() -> None:
    storage = MemoryStorage()
    await storage.push_bulk(range(TASKS))
    monitor = Monitor()
    done = 0

    def on_event(ctx: WorkerContext, event: Event) -> None:
        nonlocal done
        print(event, ctx.name)
        if event.kind is EventKind.Success:
            done += 1
            if done == TASKS:
                monitor.shutdown()  # a plain method: fine inside a callback

    for i in range(2):
        monitor.register(
            # Called with 0, then with k for the k-th restart after a failure.
            lambda restarts, i=i: WorkerBuilder(f"rango-tango-{i}").backend(storage).build(square)
        )
    (
        monitor.on_event(on_event)
        .should_restart(lambda ctx, error, attempt: attempt <= 3)
        .shutdown_timeout(5)
    )
    await monitor.run_with_signal()  # returns normally after SIGINT/SIGTERM
    print(monitor.statistics())


if __name__ == "__main__":
    trio.run(main)
