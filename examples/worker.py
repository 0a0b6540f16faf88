"""The seed's worker example: a MemoryStorage, one task, a handler that stops the worker.

Run it with ``python examples/worker.py``.
"""

import trio

from pyapalis import MemoryStorage, WorkerBuilder, WorkerContext


async def task(item: int, worker: WorkerContext) -> None:
    print(f"handling {item}")
    await trio.sleep(1)
    worker.stop()


async def main() -> None:
    storage = MemoryStorage()
    await storage.push(1)
    worker = (
        WorkerBuilder("rango-tango")
        .backend(storage)
        .on_event(lambda ctx, ev: print(ev, ctx.name))
        .build(task)
    )
    await worker.run()  # returns once stopped and drained


if __name__ == "__main__":
    trio.run(main)
