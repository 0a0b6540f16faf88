"""pyapalis inside an asyncio application.

The worker runs under trio on its own thread; asyncio code submits tasks and
awaits their outcome with ``asyncio.wrap_future``. Stopping waits for tasks in
flight, so it runs in an executor to keep the event loop responsive.

Run it with ``python examples/embed_asyncio.py``.
"""

import asyncio

import trio

from pyapalis import MemoryStorage, WorkerBuilder, start_in_thread


async def fetch_price(symbol: str) -> float:
    await trio.sleep(0.01)  # stands for a call to a slow service
    if symbol == "???":
        raise LookupError(f"unknown symbol {symbol!r}")
    return float(len(symbol) * 100)


async def main() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("prices").backend(storage).concurrency(8).build(fetch_price)
    runtime = start_in_thread(worker)
    try:
        symbols = ["AAPL", "MSFT", "GOOG", "???"]
        futures = [asyncio.wrap_future(runtime.submit(storage, s)) for s in symbols]
        for symbol, outcome in zip(
            symbols, await asyncio.gather(*futures, return_exceptions=True), strict=True
        ):
            print(f"{symbol}: {outcome!r}")
    finally:
        await asyncio.get_running_loop().run_in_executor(None, runtime.stop)
    print("stopped")


if __name__ == "__main__":
    asyncio.run(main())
