"""A durable workflow: a chain of steps, a delay, a fan-out and its fan-in.

Run it with ``python examples/workflow.py``. Each step is a task of a SQLite
file, with an id derived from the workflow, the run and the step: a worker
killed between two steps loses nothing (the next process picks the run up
where it stood), and a step pushed twice is stored once.
"""

import tempfile
from pathlib import Path

import trio

from pyapalis import SqliteStorage, WorkerBuilder
from pyapalis.workflow import Workflow

CATALOGUE = {"tea": 4, "cups": 12, "pot": 30}


async def load_order(order_id: int) -> list[str]:
    print(f"loading order {order_id}")
    return ["tea", "cups", "pot"]


async def price(item: str) -> int:
    # One task per item: on several workers, the items are priced in parallel.
    await trio.sleep(0.01 * len(item))
    print(f"priced {item}")
    return CATALOGUE[item]


def invoice(prices: list[int]) -> str:
    # Runs once, when every item is priced, with the prices in the items' order.
    return f"invoice: {prices} = {sum(prices)}"


orders = (
    Workflow[int, int]("orders")
    .and_then(load_order)
    .delay_for(0.2)  # a real pause between two steps, kept in the task's run_at
    .fan_out(price, attempts=3)
    .fan_in(invoice)
)


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        async with SqliteStorage(Path(directory) / "flows.db") as storage:
            runner = orders.on(storage)
            run_id = await runner.start(42, run_id="order-42")
            worker = WorkerBuilder("orders").backend(storage).concurrency(3).build(runner.handle)
            result: list[str] = []

            async def until_done() -> None:
                result.append(await runner.wait(run_id))

            await worker.run_until(until_done)
            status = await runner.status(run_id)
            for step in status.steps:
                print(f"step {step.index} {step.name}: {step.status} {step.result}")
            print(f"run {run_id}: {status.status}")
            print(f"result: {result[0]}")


if __name__ == "__main__":
    trio.run(main)
