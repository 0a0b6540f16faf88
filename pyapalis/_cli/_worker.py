"""``pyapalis worker MODULE:ATTR``: load a Worker, Monitor or WorkerPool and run it until a signal.

The target is imported with the current directory on ``sys.path`` (as
uvicorn and celery do), so ``pyapalis worker app:worker`` finds ``app.py``.
It is a built runner, or a factory of one (a callable, sync or async, taking
no argument, or ``concurrency=`` when ``--concurrency`` is given). The first
SIGINT or SIGTERM stops it gracefully (no task is pulled, in-flight ones
finish); a second one stops it at once, handing in-flight tasks back to their
backend. Either way the process exits 0.
"""

from __future__ import annotations

import importlib
import inspect
import os
import signal
import sys
from typing import Any

import trio

from .._monitor import Monitor
from .._ops._errors import ExitCode, OperationError
from .._worker._worker import Worker
from ..typed._pool import WorkerPool

__all__ = ["load_target", "run_target"]

RUNNERS = (Worker, Monitor, WorkerPool)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def load_target(spec: str) -> Any:
    """The object ``MODULE:ATTR`` names (ATTR may be dotted); USAGE errors name what is missing."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise OperationError(
            f"worker: expected MODULE:ATTR (like app.tasks:worker), got {spec!r}", ExitCode.USAGE
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise OperationError(
                f"worker: cannot import module {module_name!r}: no module named {error.name!r}",
                ExitCode.USAGE,
            ) from None
        raise
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise OperationError(
                f"worker: {module_name!r} has no attribute {attribute!r}", ExitCode.USAGE
            ) from None
    return target


async def _build(target: Any, spec: str, concurrency: int | None) -> Any:
    """The runner ``target`` is, or the one its factory returns."""
    if isinstance(target, RUNNERS):
        if concurrency is not None:
            raise OperationError(
                f"worker: {spec} is an already built {type(target).__name__}; for "
                f"--concurrency make it a factory taking concurrency=",
                ExitCode.USAGE,
            )
        return target
    if not callable(target) or isinstance(target, type):
        raise OperationError(
            f"worker: {spec} is a {type(target).__name__}, not a Worker, Monitor, "
            f"WorkerPool or a factory of one",
            ExitCode.USAGE,
        )
    kwargs: dict[str, Any] = {} if concurrency is None else {"concurrency": concurrency}
    try:
        inspect.signature(target).bind(**kwargs)
    except TypeError as error:
        given = "concurrency=" if kwargs else "no argument"
        raise OperationError(
            f"worker: the factory {spec} cannot be called with {given}: {error}",
            ExitCode.USAGE,
        ) from None
    except ValueError:  # no signature to inspect (some builtins): just call it
        pass
    built = target(**kwargs)
    if inspect.isawaitable(built):
        built = await built
    if not isinstance(built, RUNNERS):
        raise OperationError(
            f"worker: the factory {spec} returned a {type(built).__name__}, not a Worker, "
            f"Monitor or WorkerPool",
            ExitCode.USAGE,
        )
    return built


async def run_target(spec: str, concurrency: int | None = None) -> None:
    """Load ``spec``, run it, and return once it stopped after SIGINT/SIGTERM (or by itself)."""
    runner = await _build(load_target(spec), spec, concurrency)
    with trio.open_signal_receiver(*SIGNALS) as signals:
        # Said once the signals are ours, so whoever waits for it may signal.
        print(
            f"pyapalis worker: running {spec} ({type(runner).__name__}); "
            f"SIGINT or SIGTERM stops it",
            file=sys.stderr,
            flush=True,
        )
        stop = trio.Event()
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not stop.is_set():
                        print(
                            f"pyapalis worker: {name}: stopping gracefully",
                            file=sys.stderr,
                            flush=True,
                        )
                        stop.set()
                    else:
                        print(
                            f"pyapalis worker: {name} again: stopping now",
                            file=sys.stderr,
                            flush=True,
                        )
                        nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await runner.run_until(stop.wait)
            nursery.cancel_scope.cancel()
    print("pyapalis worker: stopped", file=sys.stderr, flush=True)
