"""The futures :meth:`BackgroundRuntime.submit` returns: cheap to make and to resolve.

A :class:`concurrent.futures.Future` makes a ``threading.Condition`` (a
Python object around an ``RLock``) and two lists per future, and resolves
through Python-level ``notify_all``: about a microsecond and a half each way,
more than the rest of a submitted task costs, and four objects per pending
future for the garbage collector to walk.

A :class:`TaskFuture` *is* a ``concurrent.futures.Future``
(``asyncio.wrap_future``, ``concurrent.futures.wait`` and ``as_completed`` take
it; it keeps the base class's fields and their meaning), made for a fraction
of that:

* every TaskFuture shares one condition (a class attribute), so making one sets
  a single field; the result and the exception are set when it is settled;
* the lists of ``concurrent.futures.wait`` waiters and of done callbacks exist
  only for the futures that use them (class defaults until then);
* settling one (:func:`settle`) wakes a thread only when one sleeps in
  :meth:`~TaskFuture.result` or :meth:`~TaskFuture.exception` of this very
  future, or watches it through ``concurrent.futures.wait``. Threads sleeping
  on other futures may wake for nothing; they check and sleep again, so those
  two methods loop until their future is done or their timeout has passed.

A thread that submits many tasks and then waits on the last future sleeps once
and is woken once, however many futures are settled meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING
from typing import Any, TypeVar

__all__ = ["TaskFuture", "settle"]

T = TypeVar("T")

logger = logging.getLogger("pyapalis.runtime")

_OVER = (FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED)

# Reentrant: concurrent.futures.wait() acquires the condition of every future
# it watches in turn, here the same one several times.
_LOCK = threading.RLock()
_CONDITION = threading.Condition(_LOCK)
_acquire = _LOCK.acquire
_release = _LOCK.release


class TaskFuture(Future[T]):
    """A :class:`concurrent.futures.Future` of a submitted task's outcome.

    ``TaskFuture()`` is pending; :func:`settle` gives it its result or
    exception. Everything else is the base class's: ``done()``, ``cancel()``,
    ``add_done_callback()``, ...
    """

    # Slots, not the base class's instance dict, for the fields every future
    # sets: a program that keeps many futures pending has the garbage
    # collector walk one object per future instead of four.
    __slots__ = ("_exception", "_result", "_state")

    # One condition for all, and the fields few futures use: class attributes
    # until a future sets its own (in an instance dict, made then). The lists
    # are behind the base class's ``_waiters`` and ``_done_callbacks``.
    _condition = _CONDITION
    _watchers: list[Any] | None = None
    _callbacks: list[Any] | None = None
    _sleepers = 0

    def __init__(self) -> None:
        # Not Future.__init__ (a Condition and two lists). ``_result`` and
        # ``_exception`` are set together when the future is settled: the
        # base class reads them only once it is FINISHED.
        self._state = PENDING

    @property
    def _waiters(self) -> list[Any]:
        """The base class's waiters (``concurrent.futures.wait`` and ``as_completed``)."""
        watchers = self._watchers
        if watchers is None:
            watchers = self._watchers = []
        return watchers

    @_waiters.setter
    def _waiters(self, value: list[Any]) -> None:
        self._watchers = value

    @property
    def _done_callbacks(self) -> list[Any]:
        """The base class's callbacks (``add_done_callback``)."""
        callbacks = self._callbacks
        if callbacks is None:
            callbacks = self._callbacks = []
        return callbacks

    @_done_callbacks.setter
    def _done_callbacks(self, value: list[Any]) -> None:
        self._callbacks = value

    # One field read needs no lock. The base class takes its condition here;
    # with one condition shared by every future, threads polling done() would
    # contend with the runtime settling other futures (measured: submit from
    # four threads that each checked their futures fell from ~0.28x to 0.14x).

    def done(self) -> bool:
        """True once the future has a result or an exception, or was cancelled."""
        return self._state in _OVER

    def cancelled(self) -> bool:
        """True if the future was cancelled."""
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self) -> bool:
        """True while marked running (``set_running_or_notify_cancel``)."""
        return self._state == RUNNING

    def result(self, timeout: float | None = None) -> T:
        """The task's result, waiting up to ``timeout`` seconds (None: for ever).

        Raises the task's exception if it failed, ``CancelledError`` if this
        future was cancelled, ``TimeoutError`` if the time ran out first.
        """
        if self._state == FINISHED and self._exception is None:
            return self._result  # type: ignore[return-value]
        with _CONDITION:
            self._sleep_until_over(timeout)
            return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The task's exception (None if it succeeded), waiting as :meth:`result` does."""
        with _CONDITION:
            self._sleep_until_over(timeout)
            return super().exception(0)

    def set_result(self, result: T) -> None:
        """Give the future its result (for tests; the runtime calls :func:`settle`).

        Raises ``InvalidStateError`` if it is done or cancelled, as the base class does.
        """
        if not settle(self, result, None):
            raise InvalidStateError(f"{self._state}: {self!r}")

    def set_exception(self, exception: BaseException | None) -> None:
        """Fail the future (for tests); raises ``InvalidStateError`` as :meth:`set_result`."""
        if exception is None:
            raise TypeError("set_exception: exception must be an exception, got None")
        if not settle(self, None, exception):
            raise InvalidStateError(f"{self._state}: {self!r}")

    def _sleep_until_over(self, timeout: float | None) -> None:
        """Wait (holding the condition) until this future is over or ``timeout`` passed."""
        if self._state in _OVER:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        self._sleepers += 1
        try:
            while self._state not in _OVER:
                if deadline is None:
                    _CONDITION.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    _CONDITION.wait(left)
        finally:
            self._sleepers -= 1


def settle(future: TaskFuture[Any], value: Any, error: BaseException | None) -> bool:
    """Fail ``future`` with ``error`` if there is one, else give it ``value``.

    Returns False, changing nothing, if it was cancelled or is done already.
    Wakes only who watches this future; its done callbacks run after, on
    this thread (an exception one raises is logged).
    """
    # acquire()/release() rather than ``with``: half the cost, once per task.
    _acquire()
    try:
        state = future._state
        if state != PENDING and state != RUNNING:  # (set_running_or_notify_cancel)
            return False
        future._result = value
        future._exception = error
        future._state = FINISHED
        if future._watchers or future._sleepers:
            _wake(future)
    finally:
        _release()
    if future._callbacks:
        _run_callbacks(future)
    return True


def _wake(future: TaskFuture[Any]) -> None:
    """Tell whoever watches ``future`` it is done (the condition held)."""
    for waiter in future._watchers or ():  # concurrent.futures.wait / as_completed
        if future._exception is None:
            waiter.add_result(future)
        else:
            waiter.add_exception(future)
    if future._sleepers:
        _CONDITION.notify_all()


def _run_callbacks(future: TaskFuture[Any]) -> None:
    """Call the done callbacks, as the base class does (an exception is logged)."""
    for callback in future._callbacks or ():
        try:
            callback(future)
        except Exception:
            logger.exception("exception calling callback for %r", future)
