"""The embedding runtime's ``spin`` option: poll before parking, to wake sooner.

A push from another thread wakes the runtime's trio thread through the
storage's eventfd. If that thread is parked in the kernel (epoll), the
wake-up pays for the kernel rescheduling it, and on an idle machine for its
CPU leaving a sleep state: that is most of the cross-thread latency there.
With ``spin`` seconds set, the thread first polls those eventfds without
sleeping (the GIL released, so producers run freely) for up to ``spin``
seconds each time it is about to park after having been woken; a push
landing in that window is seen at once and trio's epoll returns without
sleeping. A spin that sees nothing ends and the thread parks as usual, and
does not spin again until something wakes it: a runtime that receives
nothing costs no CPU, and one woken every ``1/R`` seconds costs at most
``R * spin`` CPU-seconds per second (``benchmarks/runtime_latency.py``
measures it).
"""

from __future__ import annotations

import math
import threading
from typing import Protocol, runtime_checkable

import trio

from .._implementation import spin_until_readable

__all__ = ["Spinner", "check_spin"]


@runtime_checkable
class _HasWakeFileno(Protocol):
    """A storage that tells which file descriptor its cross-thread wake uses."""

    @property
    def wake_fileno(self) -> int | None: ...


def check_spin(value: float) -> float:
    """``spin`` as seconds (>= 0, finite); 0 turns spinning off."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"spin: expected seconds as int or float, got {type(value).__name__}")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"spin: must be finite seconds >= 0 (0 turns it off), got {value!r}")
    return float(value)


class Spinner(trio.abc.Instrument):
    """A trio instrument: spins on the watched storages' wake descriptors before
    the run parks, once per wake-up (see the module docstring).

    :meth:`watch` (any thread) adds a storage; one without ``wake_fileno`` is
    ignored. ``spins`` and ``caught`` count the spins and those a wake ended
    (diagnostics, tests).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = check_spin(seconds)
        self._lock = threading.Lock()
        self._storages: tuple[_HasWakeFileno, ...] = ()
        self._fds: tuple[int, ...] = ()
        self._resolved = 0
        self._armed = True
        self.spins = 0
        self.caught = 0

    def watch(self, storage: object) -> None:
        """Spin on ``storage``'s wake descriptor too (idempotent, any thread)."""
        if not isinstance(storage, _HasWakeFileno):
            return
        with self._lock:
            if all(known is not storage for known in self._storages):
                self._storages = (*self._storages, storage)

    def before_io_wait(self, timeout: float) -> None:
        if timeout <= 0 or not self._armed:
            return
        self._armed = False
        fds = self._descriptors()
        if not fds:
            return
        self.spins += 1
        if spin_until_readable(fds, min(self.seconds, timeout)):
            self.caught += 1

    def after_io_wait(self, timeout: float) -> None:
        if timeout > 0:
            self._armed = True

    def _descriptors(self) -> tuple[int, ...]:
        storages = self._storages
        if self._resolved != len(storages) or len(self._fds) != len(storages):
            fds = [fd for storage in storages if (fd := storage.wake_fileno) is not None]
            self._fds = tuple(fds)
            self._resolved = len(storages)
        return self._fds
