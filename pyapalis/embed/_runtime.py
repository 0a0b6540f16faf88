"""A worker or monitor on a thread of its own, for services that are not trio programs.

``start_in_thread(worker_or_monitor)`` runs trio on a new thread and the worker
(or monitor) inside it. Any thread may then queue tasks: ``runtime.push`` is
fire-and-forget, ``runtime.submit`` returns a :class:`concurrent.futures.Future`
(a :class:`~pyapalis.embed._future.TaskFuture`, made and settled for a fraction
of the cost of a plain one) resolved with the handler's final outcome, which
asyncio code awaits with ``asyncio.wrap_future``; ``runtime.submit_batch``
returns one future of a whole batch's results. ``runtime.stop(timeout)`` stops
gracefully.

A trio program needs none of this: start the worker in its own nursery
(``nursery.start_soon(worker.run)``) and push with ``await storage.push(...)``.

How a submitted task's outcome comes back: ``submit`` generates a fresh id and
files its future under it *before* queueing the task under that id
(``MemoryStorage.push_new_nowait``, in C), so no outcome can arrive for an id
nobody waits for. The storage's outcome listener
(``MemoryStorage.add_outcome_listener``), called by its compiled recorder,
settles the future when the worker records the task's final outcome: ``Done``
with the handler's return value, ``Failed`` or ``Killed`` with the very
exception of the last execution, never on an execution that will be retried.
A runtime used only with ``push`` adds nothing per task.

Latency: a push from another thread wakes the trio thread (through the
storage's waker task; pushes made while a wake is pending share it), which
then needs the GIL. With ``spin`` the trio thread polls for such a wake for a
while before it parks (``_spin.py``), which saves the kernel wake-up of an
idle CPU at a measured CPU price. A producer that blocks right after pushing (waiting on a
future, on I/O) hands it over at once; one that keeps computing can delay the
handler by a switch interval or two (``sys.getswitchinterval()``, 5 ms by
default), which latency-sensitive services may lower.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import enum
import logging
import math
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import trio

from .._errors import RuntimeStoppedError, TaskError
from .._implementation import Task, TaskId
from .._status import Status
from ..backends._capabilities import PushNowait
from ..backends._memory._storage import MemoryStorage
from ._future import TaskFuture, settle
from ._spin import Spinner, check_spin

__all__ = [
    "DEFAULT_STOP_TIMEOUT",
    "BackgroundRuntime",
    "Runnable",
    "RuntimeStoppedError",
    "start_in_thread",
]

logger = logging.getLogger("pyapalis.runtime")

DEFAULT_STOP_TIMEOUT = 10.0
"""Seconds a graceful stop waits for in-flight tasks before cancelling them."""

EXIT_JOIN_GRACE = 1.0
"""At interpreter exit, how long to wait past the stop timeout for a thread whose
cancelled tasks will not end (it is a daemon thread: the interpreter then leaves it)."""

_DONE = Status.Done
_generate_id = TaskId.generate


@runtime_checkable
class Runnable(Protocol):
    """What the runtime runs: a :class:`~pyapalis.Worker` or a ``Monitor``."""

    async def run(self) -> None: ...


@runtime_checkable
class _ShutsDown(Protocol):
    """A target stopped gracefully with ``shutdown()`` (a Monitor, a WorkerPool)."""

    def shutdown(self) -> None: ...


@runtime_checkable
class _Stoppable(Protocol):
    """A worker's context: ``stop()``, and whether it is already shutting down."""

    def stop(self) -> None: ...

    @property
    def is_shutting_down(self) -> bool: ...


@runtime_checkable
class _HasContext(Protocol):
    """A target stopped through its context (a Worker)."""

    @property
    def context(self) -> object: ...


class _State(enum.Enum):
    New = "New"
    Starting = "Starting"
    Running = "Running"
    Stopping = "Stopping"
    Stopped = "Stopped"


_RUNNING: _State = _State.Running
_STOPPED: _State = _State.Stopped


def start_in_thread(
    target: Runnable,
    *,
    name: str | None = None,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    stop_at_exit: bool = True,
    spin: float = 0.0,
) -> BackgroundRuntime:
    """Run ``target`` (a Worker or a Monitor) on a new thread; returns once it runs.

    Raises the error the target failed with if it could not start. See
    :class:`BackgroundRuntime` for the arguments.
    """
    return BackgroundRuntime(
        target, name=name, stop_timeout=stop_timeout, stop_at_exit=stop_at_exit, spin=spin
    ).start()


class BackgroundRuntime:
    """Runs a Worker or a Monitor under trio on a thread of its own.

    ``BackgroundRuntime(target).start()`` (or :func:`start_in_thread`) starts
    the thread and returns once the target runs; ``with`` starts it too and
    stops it on leaving the block. ``target`` is anything with ``async run()``
    and a way to stop: ``shutdown()`` (a Monitor) or ``context.stop()`` (a Worker).

    * :meth:`push`, :meth:`submit` and :meth:`submit_batch` queue tasks from any thread.
    * :meth:`stop` stops pulling tasks, lets the ones in flight finish for up to
      ``timeout`` seconds (default ``stop_timeout``), then cancels them: they
      go back to their storage unfinished. After that every call that queues a
      task raises :class:`RuntimeStoppedError`.
    * The thread is a daemon thread, so a forgotten runtime never keeps the
      interpreter alive. With ``stop_at_exit`` (the default) an ``atexit`` hook
      stops it gracefully at interpreter exit, with ``stop_timeout``; without,
      the interpreter abandons it mid-task.
    * ``spin`` (seconds, default 0: off): before the thread parks after a
      wake-up, poll the storages this runtime pushed to for up to ``spin``
      seconds without sleeping (GIL released), so that a push from another
      thread arriving then starts its handler sooner. It costs CPU: at most
      ``spin`` CPU-seconds per wake-up, nothing while nothing arrives (see
      the README's embedding section for measured figures). Works with the
      compiled core; the pure-Python twin holds the GIL while it spins.
    * If the target fails after starting (a backend error), the runtime stops,
      pending futures fail with :class:`RuntimeStoppedError` whose
      ``__cause__`` is that error, and :meth:`stop` raises it.
    """

    def __init__(
        self,
        target: Runnable,
        *,
        name: str | None = None,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        stop_at_exit: bool = True,
        spin: float = 0.0,
    ) -> None:
        if not isinstance(target, Runnable):
            raise TypeError(
                "BackgroundRuntime: target must be a Worker or a Monitor (an object with "
                f"async run()), got {type(target).__name__}"
            )
        self._target = target
        self._stop_target = _stopper_for(target)
        self._stop_timeout = _check_timeout(stop_timeout, "stop_timeout")
        if name is None:
            name = f"pyapalis-{getattr(target, 'name', type(target).__name__)}"
        elif not isinstance(name, str) or not name:
            raise ValueError(f"BackgroundRuntime: name must be a non-empty string, got {name!r}")
        self._name = name
        self._stop_at_exit = bool(stop_at_exit)
        spin = check_spin(spin)
        self._spinner = Spinner(spin) if spin else None
        # Storages pushed to through this runtime, by id (kept alive: a
        # runtime uses a handful): checked once, not on every push.
        self._storages: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._state = _State.New
        self._stop_after = self._stop_timeout
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop_requested = trio.Event()
        self._target_done = trio.Event()
        self._entered = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._error_reported = False
        self._thread = threading.Thread(target=self._thread_main, name=name, daemon=True)
        # By the id of a submitted task: its future, or its batch and its
        # place in it (submit_batch); resolved on the trio thread.
        self._pending: dict[TaskId, TaskFuture[Any] | tuple[_Batch, int]] = {}
        # One per storage submitted to: its outcome listener resolves futures.
        self._taps: dict[int, _StorageTap] = {}

    # -- life cycle --------------------------------------------------------

    def start(self) -> BackgroundRuntime:
        """Start the thread; returns ``self`` once the target runs.

        Raises the target's error if it failed while starting, and
        :class:`RuntimeStoppedError` if this runtime was started before.
        """
        with self._lock:
            if self._state is not _State.New:
                raise RuntimeStoppedError(
                    f"runtime {self._name!r} was already started (it is {self._state.value}); "
                    "a runtime starts once"
                )
            self._state = _State.Starting
        self._thread.start()
        self._ready.wait()
        if self._state is _State.Stopped:
            self._thread.join()
            self._raise_error_once()
            return self
        if self._stop_at_exit:
            atexit.register(self._stop_at_interpreter_exit)
        return self

    def stop(self, timeout: float | None = None, *, wait: bool = True) -> None:
        """Stop gracefully and wait for the thread to end.

        The target stops pulling tasks at once; those in flight get ``timeout``
        seconds (default: ``stop_timeout``) to finish, then they are cancelled
        and go back to their storage. Tasks still queued stay in their storage;
        their futures fail with :class:`RuntimeStoppedError`. Raises the error
        the target failed with, if it did (once). Stopping again does nothing.

        ``wait=False`` only starts the stop (an event loop must not block:
        ``await loop.run_in_executor(None, runtime.stop)`` also works). Called
        on the runtime's own thread (from a handler) it never waits: a thread
        cannot wait for itself to end.
        """
        after = self._stop_timeout if timeout is None else _check_timeout(timeout, "timeout")
        self._request_stop(after)
        if not wait or threading.current_thread() is self._thread:
            return
        self.join()
        atexit.unregister(self._stop_at_interpreter_exit)
        self._raise_error_once()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the thread has ended (at most ``timeout`` seconds); True if it has.

        Does not stop anything: the target ends by itself, or after :meth:`stop`.
        """
        if timeout is not None:
            timeout = _check_timeout(timeout, "timeout")
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> BackgroundRuntime:
        if self._state is _State.New:
            return self.start()
        if self._state is not _State.Running:
            raise self._refusal("with")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def name(self) -> str:
        """The runtime's name, also its thread's name."""
        return self._name

    @property
    def thread(self) -> threading.Thread:
        """The thread trio runs on."""
        return self._thread

    @property
    def token(self) -> trio.lowlevel.TrioToken:
        """The trio run's token, to call into it from other threads, e.g.
        ``trio.from_thread.run(async_fn, trio_token=runtime.token)``."""
        if self._token is None:
            raise RuntimeStoppedError(f"runtime {self._name!r} is not started yet")
        return self._token

    @property
    def spin(self) -> float:
        """Seconds the thread polls before it parks after a wake-up (0: off)."""
        return 0.0 if self._spinner is None else self._spinner.seconds

    @property
    def spin_counts(self) -> tuple[int, int]:
        """``(spins, caught)``: spins so far, and how many a push ended (diagnostics)."""
        spinner = self._spinner
        return (0, 0) if spinner is None else (spinner.spins, spinner.caught)

    @property
    def is_running(self) -> bool:
        """Started and taking tasks (not stopping, not stopped)."""
        return self._state is _State.Running

    @property
    def is_stopped(self) -> bool:
        """The thread has ended (or the runtime was stopped before it started)."""
        return self._state is _State.Stopped

    def __repr__(self) -> str:
        return f"BackgroundRuntime(name={self._name!r}, state={self._state.value})"

    # -- producers (any thread) --------------------------------------------

    def push(self, storage: Any, args: Any) -> TaskId:
        """Queue ``args`` as a new task in ``storage`` from any thread; returns its id.

        ``storage.push_nowait(args)`` behind a check that the runtime still
        runs; raises ``trio.WouldBlock`` if a bounded storage is full.
        """
        if self._state is not _State.Running:
            raise self._refusal("push")
        if id(storage) not in self._storages:
            self._admit(storage)
        task_id: TaskId = storage.push_nowait(args)
        return task_id

    def submit(self, storage: MemoryStorage, args: Any) -> concurrent.futures.Future[Any]:
        """Queue ``args`` in ``storage`` from any thread; a future of the outcome.

        The future gets the handler's return value when the task succeeds, or
        the exception of its last execution when it fails for good (after any
        retries). ``storage`` must be consumed by this runtime's target.
        Cancelling the future only stops you waiting: the task still runs.
        Raises ``trio.WouldBlock`` if a bounded storage is full.
        """
        if self._state is not _RUNNING:
            raise self._refusal("submit")
        tap = self._taps.get(id(storage))
        if tap is None:
            tap = self._tap(storage)
        task_id = _generate_id()
        future: TaskFuture[Any] = TaskFuture()
        pending = self._pending
        # Filed before the task exists: its outcome cannot come first.
        pending[task_id] = future
        try:
            tap.push(args, task_id)
        except BaseException:
            del pending[task_id]
            raise
        # The runtime may have ended between the check above and now, maybe
        # after failing the pending futures: make sure this one is not forgotten.
        if self._state is _STOPPED and pending.pop(task_id, None) is not None:
            settle(future, None, self._stopped_before(task_id))
        return future

    def submit_batch(
        self, storage: MemoryStorage, items: Iterable[Any], *, return_exceptions: bool = False
    ) -> concurrent.futures.Future[list[Any]]:
        """Queue every item of ``items`` in ``storage``; one future of all their outcomes.

        The future gets the handlers' return values in the order of ``items``
        once every task has finished for good. A task that fails for good
        fails the future with its exception at once (the other tasks still
        run), unless ``return_exceptions``: then its exception takes its place
        in the list, as with ``asyncio.gather``. One future for the batch
        instead of one per task is what makes this many times faster than
        :meth:`submit` in a loop. An empty batch gives a future already
        resolved with ``[]``.

        Raises ``trio.WouldBlock`` if a bounded storage fills up part way: the
        tasks queued until then stay queued and run, their outcomes not
        collected (the message says how many).
        """
        if self._state is not _State.Running:
            raise self._refusal("submit_batch")
        tap = self._taps.get(id(storage))
        if tap is None:
            tap = self._tap(storage, "submit_batch")
        all_args = list(_iterable_arg(items))
        future: TaskFuture[list[Any]] = TaskFuture()
        batch = _Batch(future, len(all_args), bool(return_exceptions))
        if not all_args:
            settle(future, [], None)
            return future
        pending = self._pending
        ids = [_generate_id() for _ in all_args]
        for index, task_id in enumerate(ids):
            pending[task_id] = (batch, index)
        queued = 0
        push = tap.push
        try:
            for args, task_id in zip(all_args, ids, strict=True):
                push(args, task_id)
                queued += 1
        except BaseException as error:
            for task_id in ids:
                pending.pop(task_id, None)
            if isinstance(error, trio.WouldBlock):
                raise trio.WouldBlock(
                    f"submit_batch: {error} after queueing {queued} of {len(all_args)} tasks "
                    "(those run; their outcomes are not collected)"
                ) from None
            raise
        if self.is_stopped:
            # As in submit(): the runtime may have ended before these were
            # filed. Take every one back (nothing will settle them now).
            left = [task_id for task_id in ids if pending.pop(task_id, None) is not None]
            if left:
                settle(future, None, self._stopped_before(left[0]))
        return future

    # -- internals: producers ----------------------------------------------

    def _admit(self, storage: Any) -> None:
        """Check a storage :meth:`push` sees for the first time, and remember it."""
        if not isinstance(storage, PushNowait):
            raise TypeError(
                f"push: storage must have push_nowait() (a MemoryStorage), "
                f"got {type(storage).__name__}"
            )
        if self._spinner is not None:
            self._spinner.watch(storage)
        self._storages[id(storage)] = storage

    def _tap(self, storage: MemoryStorage, what: str = "submit") -> _StorageTap:
        if not isinstance(storage, MemoryStorage):
            raise TypeError(
                f"{what}: storage must be a MemoryStorage, got {type(storage).__name__}"
            )
        with self._lock:
            tap = self._taps.get(id(storage))
            if tap is None:
                tap = _StorageTap(storage, self._settle)
                if self._spinner is not None:
                    self._spinner.watch(storage)
                if self._state is _State.Stopped:
                    # _finish() has detached the taps already: undo this one.
                    tap.detach()
                    raise self._refusal(what)
                self._taps[id(storage)] = tap
        return tap

    def _refusal(self, what: str) -> RuntimeStoppedError:
        state = self._state
        if state is _State.New or state is _State.Starting:
            return RuntimeStoppedError(f"{what}: runtime {self._name!r} is not started yet")
        error = RuntimeStoppedError(
            f"{what}: runtime {self._name!r} is {state.value.lower()}; it takes no more tasks"
        )
        error.__cause__ = self._error
        return error

    def _stopped_before(self, task_id: TaskId) -> RuntimeStoppedError:
        error = RuntimeStoppedError(
            f"runtime {self._name!r} stopped before task {task_id} finished "
            "(the task is still in its storage)"
        )
        error.__cause__ = self._error
        return error

    # -- internals: the trio thread ----------------------------------------

    def _settle(self, task: Task, status: Status, result: Any, error: BaseException | None) -> None:
        """A final outcome a storage recorded (its outcome listener, any thread)."""
        task_id = task.parts.task_id
        entry = self._pending.pop(task_id, None)  # type: ignore[arg-type]
        if entry is None:
            return
        if status is not _DONE and error is None:
            error = TaskError(f"task {task_id} {status}")
        if isinstance(entry, tuple):
            batch, index = entry
            batch.settle(index, result if error is None else error, error is not None)
        else:
            settle(entry, result, error)

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            if self._error is None:
                self._error = exc
        finally:
            self._finish()

    async def _main(self) -> None:
        if self._spinner is not None:
            trio.lowlevel.add_instrument(self._spinner)
        with self._lock:
            self._token = trio.lowlevel.current_trio_token()
            if self._state is _State.Stopping:
                self._on_stop_request()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_target)
            # The target's run() has started once its task is suspended inside
            # it: whatever it checks synchronously on entry has been checked.
            while not self._entered:
                await trio.lowlevel.checkpoint()
            if self._stop_requested.is_set():
                self._on_stop_request()  # asked before the target had started
            if not self._target_done.is_set():
                with self._lock:
                    if self._state is _State.Starting:
                        self._state = _State.Running
                # (A target that ended already is reported by _finish.)
                self._ready.set()
            await self._stop_requested.wait()
            if not self._target_done.is_set():
                with trio.move_on_after(self._stop_after):
                    await self._target_done.wait()
                # In-flight tasks that outlived the timeout are cancelled; the
                # worker hands them back to their storage.
                nursery.cancel_scope.cancel()

    async def _run_target(self) -> None:
        self._entered = True
        try:
            await self._target.run()
        except Exception as exc:
            self._error = exc
        finally:
            self._target_done.set()
            self._stop_requested.set()

    def _on_stop_request(self) -> None:
        """Stop the target now, on the trio thread (see :meth:`_request_stop`)."""
        self._stop_requested.set()
        if self._entered and not self._target_done.is_set():
            try:
                self._stop_target()
            except Exception:
                logger.exception("runtime %r: stopping its target failed", self._name)

    def _finish(self) -> None:
        """The thread is ending: refuse new tasks and fail the futures left."""
        with self._lock:
            self._state = _State.Stopped
        pending = self._pending
        while pending:
            try:
                task_id, entry = pending.popitem()
            except KeyError:
                break
            future = entry[0].future if isinstance(entry, tuple) else entry
            if not future.done():  # a batch's future is failed once, not once per task
                settle(future, None, self._stopped_before(task_id))
        with self._lock:
            taps = list(self._taps.values())
        for tap in taps:
            tap.detach()
        self._ready.set()

    # -- internals: stopping -----------------------------------------------

    def _request_stop(self, timeout: float) -> None:
        with self._lock:
            state = self._state
            if state is _State.New:
                self._state = _State.Stopped
                return
            if state is not _State.Starting and state is not _State.Running:
                return
            self._state = _State.Stopping
            self._stop_after = timeout
            token = self._token
        # Before the run published its token, _main sees the Stopping state.
        # The target is stopped in this very callback, so anything queued with
        # the token after stop() returned (trio.from_thread) runs after it.
        if token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._on_stop_request)

    def _raise_error_once(self) -> None:
        with self._lock:
            error = self._error
            if error is None or self._error_reported:
                return
            self._error_reported = True
        raise error

    def _stop_at_interpreter_exit(self) -> None:
        """The ``atexit`` hook: stop gracefully, never hang the interpreter."""
        self._request_stop(self._stop_timeout)
        self._thread.join(self._stop_timeout + EXIT_JOIN_GRACE)
        if self._thread.is_alive():
            logger.warning(
                "runtime %r did not stop within %gs at interpreter exit; abandoning it",
                self._name,
                self._stop_timeout + EXIT_JOIN_GRACE,
            )
        elif self._error is not None and not self._error_reported:
            self._error_reported = True
            logger.error("runtime %r failed", self._name, exc_info=self._error)


class _StorageTap:
    """What :meth:`BackgroundRuntime.submit` uses of one MemoryStorage.

    :meth:`push` queues ``args`` under an id the caller generated from any
    thread (``push_new_nowait``); the runtime's ``settle`` is the storage's
    outcome listener from creation until :meth:`detach`.
    """

    __slots__ = ("_settle", "push", "storage")

    def __init__(
        self,
        storage: MemoryStorage,
        settle: Callable[[Task, Status, Any, BaseException | None], None],
    ) -> None:
        self.storage = storage
        self.push: Callable[[Any, TaskId], None] = storage.push_new_nowait
        self._settle = settle
        storage.add_outcome_listener(settle)

    def detach(self) -> None:
        """Stop listening to the storage's outcomes."""
        self.storage.remove_outcome_listener(self._settle)


class _Batch:
    """The outcomes of one :meth:`BackgroundRuntime.submit_batch`, collected in order."""

    __slots__ = ("_lock", "future", "remaining", "results", "return_exceptions")

    def __init__(self, future: TaskFuture[list[Any]], size: int, return_exceptions: bool) -> None:
        self.future = future
        self.results: list[Any] = [None] * size
        self.remaining = size
        self.return_exceptions = return_exceptions
        # Outcome listeners may run on any thread that acks (see _settle).
        self._lock = threading.Lock()

    def settle(self, index: int, value: Any, failed: bool) -> None:
        """Task ``index`` finished for good with ``value`` (its exception if ``failed``)."""
        if failed and not self.return_exceptions:
            settle(self.future, None, value)
            return
        self.results[index] = value
        with self._lock:
            self.remaining -= 1
            complete = not self.remaining
        if complete:
            settle(self.future, self.results, None)


def _iterable_arg(items: object) -> Iterable[Any]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(
            f"submit_batch: items must be an iterable of task args (not a string), "
            f"got {type(items).__name__}"
        )
    return items


def _stopper_for(target: object) -> Callable[[], None]:
    """How to ask ``target`` to stop gracefully: a Monitor's ``shutdown()`` or a
    Worker's ``context.stop()``."""
    if isinstance(target, _ShutsDown):
        return target.shutdown
    context = target.context if isinstance(target, _HasContext) else None
    if isinstance(context, _Stoppable):
        stoppable = context

        def stop_worker() -> None:
            if not stoppable.is_shutting_down:
                stoppable.stop()

        return stop_worker
    raise TypeError(
        "BackgroundRuntime: target must be a Worker or a Monitor (with context.stop() or "
        f"shutdown()), got {type(target).__name__}"
    )


def _check_timeout(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected seconds as int or float, got {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name}: must be >= 0 seconds (math.inf waits forever), got {value!r}")
    return float(value)
