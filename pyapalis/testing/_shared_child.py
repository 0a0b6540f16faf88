"""A worker process for the shared-backend conformance cases (run by the suite, not by users).

``python -m pyapalis.testing._shared_child CONFIG_JSON`` builds the backend from
the config's ``factory`` and ``url``, runs a worker on it until SIGTERM or
SIGINT (a graceful stop, exit 0), and appends one JSON line per execution to
the config's ``log`` file: ``{"id", "pid", "attempt", "item"}``. The handler
returns ``{"item": item, "pid": pid}``, sleeps ``delay`` seconds first, waits
until the file ``gate`` exists when one is given, or never returns when
``hang`` is set. The ``ready`` file appears once the
worker has started.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import trio

from .._implementation import Attempt, TaskId
from .._worker._context import WorkerContext
from .._worker._events import Event, EventKind
from .._worker._worker import WorkerBuilder
from ._resolve import resolve


async def main(config: dict[str, Any]) -> None:
    backend = resolve(config["factory"])(config["url"])
    pid = os.getpid()
    log = open(config["log"], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (the run's life)
    delay = float(config.get("delay", 0.0))
    hang = bool(config.get("hang", False))
    gate = config.get("gate")

    async def handler(item: Any, task_id: TaskId, attempt: Attempt) -> Any:
        record = {"id": str(task_id), "pid": pid, "attempt": attempt.current(), "item": item}
        log.write(json.dumps(record) + "\n")
        log.flush()
        if hang:
            await trio.sleep_forever()
        if delay:
            await trio.sleep(delay)
        while gate is not None and not os.path.exists(gate):
            await trio.sleep(0.005)
        return {"item": item, "pid": pid}

    def on_event(ctx: WorkerContext, event: Event) -> None:
        if event.kind is EventKind.Start:
            ready = config["ready"]
            with open(ready + ".tmp", "w", encoding="utf-8") as file:
                file.write(str(pid))
            os.replace(ready + ".tmp", ready)

    worker = (
        WorkerBuilder(config["name"])
        .backend(backend)
        .concurrency(int(config.get("concurrency", 1)))
        .on_event(on_event)
        .build(handler)
    )

    async def stop_on(signals: Any) -> None:
        async for _ in signals:
            worker.context.stop()
            return

    try:
        # The signals are caught before the worker starts (and writes ``ready``).
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop_on, signals)
                await worker.run()
                nursery.cancel_scope.cancel()
    finally:
        log.close()
        close = getattr(backend, "aclose", None)
        if close is not None:
            await close()


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]))
