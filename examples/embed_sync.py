"""pyapalis inside a plain threaded program: no trio, no asyncio in sight.

The worker runs on a background thread (``start_in_thread``); any thread
submits tasks and waits on a ``concurrent.futures.Future``. Leaving the
``with`` block stops the runtime gracefully.

Run it with ``python examples/embed_sync.py``.
"""

from concurrent.futures import ThreadPoolExecutor

import trio

from pyapalis import MemoryStorage, RetryPolicy, WorkerBuilder, start_in_thread


async def resize(image: str) -> str:
    await trio.sleep(0.01)  # stands for real work (I/O, a subprocess...)
    if image.endswith(".gif"):
        raise ValueError(f"cannot resize {image}")
    return f"{image} -> thumbnail"


def main() -> None:
    storage = MemoryStorage()
    worker = (
        WorkerBuilder("thumbnails")
        .backend(storage)
        .concurrency(4)
        .retry(RetryPolicy.retries(1))
        .build(resize)
    )
    with start_in_thread(worker) as runtime:
        # Request threads of a web server, say: each submits and waits.
        def handle_request(image: str) -> str:
            future = runtime.submit(storage, image)
            try:
                return future.result(timeout=10)
            except ValueError as error:
                return f"failed: {error}"

        # Fire-and-forget works too (the outcome is not reported).
        runtime.push(storage, "banner.png")
        images = ["cat.png", "dog.jpg", "party.gif", "tree.png"]
        with ThreadPoolExecutor(4) as requests:
            for reply in requests.map(handle_request, images):
                print(reply)
        # A whole batch, one future: results in order, failures in their place.
        batch = runtime.submit_batch(storage, ["a.png", "b.gif"], return_exceptions=True)
        for image, outcome in zip(["a.png", "b.gif"], batch.result(timeout=10), strict=True):
            print(f"batch {image}: {outcome}")
    print("stopped")


if __name__ == "__main__":
    main()
