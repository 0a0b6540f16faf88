"""The synchronous producer: pushes from code that is not trio (threads, views, asyncio).

coredis is async and its client belongs to one trio run, so the producer runs
a trio run of its own on a daemon thread, with its own client, started at the
first push. A push from any other thread hands the work to that run
(``trio.from_thread.run``) and blocks until Redis has the tasks, so the caller
gets the same guarantee as ``await storage.push(...)``: the push script is the
same one. Concurrent callers are served concurrently by the run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import trio

from ..._errors import StorageError
from ..._implementation import Task, TaskId
from .._codec import Codec
from .._kit._clock import run_clock
from ._client import acquire, release
from ._keys import QueueKeys
from ._store import RedisStore

__all__ = ["SyncProducer"]


class SyncProducer:
    """A trio run on a thread of its own that pushes for synchronous callers."""

    def __init__(self, url: str, options: dict[str, Any], keys: QueueKeys, codec: Codec) -> None:
        self._url = url
        self._options = options
        self._keys = keys
        self._codec = codec
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._store: RedisStore | None = None
        self._failure: BaseException | None = None

    def push(
        self, tasks: Sequence[Task], *, stamp_now: bool, unique: Sequence[str] | None = None
    ) -> list[TaskId]:
        """Store ``tasks`` (due now if ``stamp_now``); blocks until Redis has them."""
        token = self._started()
        return trio.from_thread.run(self._push, tasks, stamp_now, unique, trio_token=token)

    async def _push(
        self, tasks: Sequence[Task], stamp_now: bool, unique: Sequence[str] | None
    ) -> list[TaskId]:
        store = self._store
        assert store is not None
        now = run_clock().wall_now()
        due = now if stamp_now else None
        keys = unique if unique is not None else [""] * len(tasks)
        new = [store.new_task(task, key, due) for task, key in zip(tasks, keys, strict=True)]
        return await store.push(new, now)

    def _started(self) -> trio.lowlevel.TrioToken:
        with self._lock:
            if self._token is not None:
                return self._token
            ready = threading.Event()
            thread = threading.Thread(
                target=trio.run,
                args=(self._main, ready),
                name="pyapalis-redis-producer",
                daemon=True,
            )
            thread.start()
            ready.wait()
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise StorageError(f"the synchronous producer could not start: {failure}") from (
                    failure
                )
            self._thread = thread
            assert self._token is not None
            return self._token

    async def _main(self, ready: threading.Event) -> None:
        try:
            client = await acquire(self._url, **self._options)
            try:
                # Results and workers are none of a producer's business.
                self._store = RedisStore(client, self._keys, self._codec, float("inf"), 1.0)
                self._stop = trio.Event()
                self._token = trio.lowlevel.current_trio_token()
                ready.set()
                await self._stop.wait()
            finally:
                await release(self._url, **self._options)
        except BaseException as error:
            self._failure = error
            raise
        finally:
            ready.set()

    def close(self) -> None:
        """Stop the thread (waits for pushes in progress); a later push starts it again."""
        with self._lock:
            token, stop, thread = self._token, self._stop, self._thread
            self._token = self._stop = self._thread = None
            self._store = None
        if token is None or stop is None or thread is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join()
