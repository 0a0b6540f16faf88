"""What every ``TaskSink`` does the same way, written once."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Sized
from typing import Any

__all__ = ["push_batches", "push_each"]


async def push_each(push: Callable[[Any], Awaitable[object]], items: AsyncIterable[Any]) -> int:
    """``push_stream``: push every item an async iterable yields, as it yields; the count.

    One ``await push(item)`` per item, so a bounded backend holds the source
    back and an item is never taken from the source before the previous one
    is queued. (A backend that can commit a batch at once, as SQLite does,
    writes its own.)
    """
    count = 0
    async for item in items:
        await push(item)
        count += 1
    return count


async def push_batches(
    push_bulk: Callable[[list[Any]], Awaitable[Sized]], items: AsyncIterable[Any], size: int
) -> int:
    """``push_stream`` for a backend that commits a batch at once; the count.

    Collects what the source yields and hands every ``size`` items (and the
    rest at the end) to ``push_bulk``; counts what it stored.
    """
    count = 0
    batch: list[Any] = []
    async for item in items:
        batch.append(item)
        if len(batch) >= size:
            count += len(await push_bulk(batch))
            batch = []
    if batch:
        count += len(await push_bulk(batch))
    return count
