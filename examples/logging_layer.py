"""The seed's LoggingLayer / LoggingService (a tower Layer and Service), as Python classes.

A layer is an object with ``layer(inner) -> service``; a service is an async
callable ``await service(task) -> result`` that may have ``async def ready()``
for backpressure. This pair prints each request, then hands it on.

Run it with ``python examples/logging_layer.py``.
"""

from typing import Any

import trio

from pyapalis import MemoryStorage, Task, WorkerBuilder, WorkerContext
from pyapalis.layers import Service


class LoggingService:
    """Prints every request with its target, then calls the inner service."""

    def __init__(self, target: str, service: Service) -> None:
        self.target = target
        self.service = service

    async def ready(self) -> None:
        # poll_ready: ready when the inner service is.
        ready = getattr(self.service, "ready", None)
        if ready is not None:
            await ready()

    async def __call__(self, request: Task) -> Any:
        print(f"request = {request.args!r}, target = {self.target!r}")
        return await self.service(request)


class LoggingLayer:
    """Wraps a service in a :class:`LoggingService`."""

    def __init__(self, target: str) -> None:
        self.target = target

    def layer(self, service: Service) -> Service:
        return LoggingService(self.target, service)


async def send_email(email: str, worker: WorkerContext) -> str:
    print(f"sending to {email}")
    if email.startswith("last"):
        worker.stop()
    return f"sent to {email}"


async def main() -> None:
    storage = MemoryStorage()
    await storage.push_bulk(["first@example.com", "last@example.com"])
    worker = (
        WorkerBuilder("email-worker")
        .backend(storage)
        .layer(LoggingLayer("email-worker"))
        .on_event(lambda ctx, event: print(event))
        .build(send_email)
    )
    await worker.run()


if __name__ == "__main__":
    trio.run(main)
