"""Throughput over the last minutes, from samples of the finished-task count.

Backends do not share a history of completions, so the board samples the
number of finished tasks (Done + Failed + Killed) whenever it reads the
counts, at most once per ``interval`` seconds, and reports the growth between
consecutive samples as tasks per minute. A purge or vacuum shrinks the count:
that interval counts 0, not a negative rate. Time is trio's clock, so tests run
in virtual time.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any

import trio

__all__ = ["Throughput"]


class Throughput:
    """The last ``keep`` samples of the finished count, one per ``interval`` seconds at most."""

    def __init__(self, interval: float = 5.0, keep: int = 120) -> None:
        self.interval = interval
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=keep)

    def sample(self, finished: int) -> None:
        """Record the finished count now, unless the last sample is younger than ``interval``."""
        now = trio.current_time()
        if self._samples and now - self._samples[-1][0] < self.interval:
            return
        self._samples.append((now, finished))

    def points(self) -> list[dict[str, Any]]:
        """``[{"ago": seconds, "per_minute": rate}, ...]``, oldest first."""
        now = trio.current_time()
        samples = list(self._samples)
        points = []
        for (before, count_before), (after, count_after) in itertools.pairwise(samples):
            span = after - before
            rate = max(count_after - count_before, 0) * 60.0 / span if span > 0 else 0.0
            points.append({"ago": round(now - after, 3), "per_minute": round(rate, 3)})
        return points
