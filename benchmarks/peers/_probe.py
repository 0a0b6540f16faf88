"""The marks a throughput run makes: start, all pushed, last task done.

Timing uses ``time.perf_counter``. Memory is the growth of the process's
resident set during the run, measured so that every contender is charged the
same way, whatever it allocates with (Python objects, pickled bytes, C
buffers, thread stacks) and whichever thread allocates it:

* on Linux, ``start()`` resets the kernel's high-water mark of the resident
  set (``/proc/self/clear_refs``, value 5) and reads the current resident set;
  ``finish()`` reads the high-water mark (``VmHWM``). Their difference is the
  peak memory the workload added: the imports and the framework's fixed set-up
  before ``start()`` are not counted.
* elsewhere (or if ``clear_refs`` is not writable) the peak is
  ``getrusage().ru_maxrss``, which cannot be reset: the figure is then the peak
  of the whole process minus the resident set at ``start()``.

tracemalloc was rejected: it sees only the allocations made through Python's
allocators, not those C extensions make with ``malloc`` or the memory of
threads, and it slows every allocation, which would skew the timing of the same
run. Each contender runs in a fresh process (see ``benchmarks.compare``), so no
contender inherits another's heap.
"""

from __future__ import annotations

import math
import resource
import sys
import threading
import time
from dataclasses import dataclass

__all__ = ["Probe", "Timing"]

_now = time.perf_counter


@dataclass(frozen=True)
class Timing:
    """What one throughput run measured."""

    n: int
    push_seconds: float
    """First push to last push."""
    total_seconds: float
    """First push to the completion of the last task."""
    peak_growth_bytes: float
    """Peak resident memory added by the run (NaN if unknown)."""
    memory_method: str

    @property
    def tasks_per_second(self) -> float:
        return self.n / self.total_seconds


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux: KiB


class Probe:
    """Collects the marks of one throughput run (``finish()`` may come from any thread)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._started: float | None = None
        self._pushed: float | None = None
        self._finished: float | None = None
        self._rss_at_start = 0
        self._peak = 0
        self._method = "none"
        self._done = threading.Event()

    def start(self) -> None:
        """Call just before the first push (after all set-up)."""
        if _reset_peak() and (rss := _status_kib("VmRSS")) is not None:
            self._method = "VmHWM after clear_refs"
            self._rss_at_start = rss * 1024
        else:
            self._method = "ru_maxrss"
            rss_kib = _status_kib("VmRSS")
            self._rss_at_start = rss_kib * 1024 if rss_kib is not None else _ru_maxrss_bytes()
        self._started = _now()

    def pushed(self) -> None:
        """Call after the last push."""
        self._pushed = _now()

    def finish(self) -> None:
        """Call when the last task has been handled (from the handler is best)."""
        self._finished = _now()
        if self._method == "VmHWM after clear_refs":
            hwm = _status_kib("VmHWM")
            self._peak = hwm * 1024 if hwm is not None else 0
        else:
            self._peak = _ru_maxrss_bytes()
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling thread until :meth:`finish` (for thread-based consumers)."""
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._finished is not None

    def timing(self) -> Timing:
        """The figures; RuntimeError if a mark is missing."""
        if self._started is None or self._pushed is None or self._finished is None:
            raise RuntimeError(
                f"incomplete run: start={self._started} pushed={self._pushed} "
                f"finish={self._finished}"
            )
        growth = self._peak - self._rss_at_start if self._peak else math.nan
        return Timing(
            n=self.n,
            push_seconds=self._pushed - self._started,
            total_seconds=self._finished - self._started,
            peak_growth_bytes=float(growth),
            memory_method=self._method,
        )
