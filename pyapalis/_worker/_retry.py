"""How long to wait before a retry, and how many executions a task gets."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import ClassVar

__all__ = ["BackoffMode", "RetryPolicy"]


def _check_seconds(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected seconds as int or float, got {type(value).__name__}")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"{name}: must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class BackoffMode:
    """The delay before retry number *k* (after the *k*-th failed execution).

    Use the ready-made ``BackoffMode.NoBackoff`` and
    ``BackoffMode.ExponentialBackoff`` (backie's ``2^(k)`` seconds: 2 s, 4 s,
    8 s ...), or the factories :meth:`constant`, :meth:`linear` and
    :meth:`exponential` (capped, with optional jitter).
    """

    kind: str
    base: float = 0.0
    factor: float = 2.0
    max_delay: float = math.inf
    jitter: float = 0.0
    rng: random.Random | None = field(default=None, compare=False, repr=False)

    NoBackoff: ClassVar[BackoffMode]
    ExponentialBackoff: ClassVar[BackoffMode]

    @classmethod
    def constant(cls, delay: float) -> BackoffMode:
        """The same ``delay`` before every retry."""
        return cls("constant", base=_check_seconds(delay, "constant: delay"))

    @classmethod
    def linear(cls, step: float, *, max_delay: float = math.inf) -> BackoffMode:
        """``step * k`` seconds before retry *k*, at most ``max_delay``."""
        return cls(
            "linear",
            base=_check_seconds(step, "linear: step"),
            max_delay=_check_max(max_delay),
        )

    @classmethod
    def exponential(
        cls,
        base: float = 1.0,
        *,
        factor: float = 2.0,
        max_delay: float = math.inf,
        jitter: float = 0.0,
        rng: random.Random | None = None,
    ) -> BackoffMode:
        """``base * factor^(k-1)`` seconds before retry *k*, capped at ``max_delay``.

        ``jitter`` in [0, 1] spreads retries of many tasks: the delay is drawn
        uniformly from ``[d * (1 - jitter), d]``. Pass ``rng`` for reproducible
        draws.
        """
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
            raise ValueError(f"exponential: factor must be a number >= 1, got {factor!r}")
        if (
            isinstance(jitter, bool)
            or not isinstance(jitter, (int, float))
            or not (0 <= jitter <= 1)
        ):
            raise ValueError(f"exponential: jitter must be between 0 and 1, got {jitter!r}")
        return cls(
            "exponential",
            base=_check_seconds(base, "exponential: base"),
            factor=float(factor),
            max_delay=_check_max(max_delay),
            jitter=float(jitter),
            rng=rng,
        )

    def delay(self, failures: int) -> float:
        """Seconds to wait before the retry that follows the ``failures``-th failure."""
        if failures < 1:
            raise ValueError(f"delay: failures must be >= 1, got {failures!r}")
        if self.kind == "none":
            return 0.0
        if self.kind == "constant":
            return self.base
        if self.kind == "linear":
            return min(self.base * failures, self.max_delay)
        if self.kind == "backie":
            return float(2**failures)
        # exponential; the exponent is bounded so huge counts cannot overflow
        exponent = min(failures - 1, 1024)
        try:
            delay = min(self.base * self.factor**exponent, self.max_delay)
        except OverflowError:
            delay = self.max_delay
        if self.jitter:
            draw = (self.rng or random).random()
            delay *= 1.0 - self.jitter * draw
        return delay


def _check_max(value: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == math.inf:
        return math.inf
    return _check_seconds(value, "max_delay")


BackoffMode.NoBackoff = BackoffMode("none")
BackoffMode.ExponentialBackoff = BackoffMode("backie")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times a worker re-runs a failing task, and how long it waits.

    ``RetryPolicy.retries(3)`` allows 3 retries, so 4 executions in all.
    A task's own ``max_attempts`` (``TaskBuilder.attempts``) takes precedence.
    """

    max_retries: int = 0
    backoff: BackoffMode = BackoffMode.NoBackoff

    @classmethod
    def retries(cls, n: int, backoff: BackoffMode | None = None) -> RetryPolicy:
        """Allow ``n`` retries (``n + 1`` executions)."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"retries: n must be an int, got {type(n).__name__} {n!r}")
        if n < 0:
            raise ValueError(f"retries: n must be >= 0, got {n!r}")
        return cls(n, backoff if backoff is not None else BackoffMode.NoBackoff)

    def with_backoff(self, backoff: BackoffMode) -> RetryPolicy:
        """The same policy with another backoff."""
        if not isinstance(backoff, BackoffMode):
            raise TypeError(f"with_backoff: expected BackoffMode, got {type(backoff).__name__}")
        return replace(self, backoff=backoff)

    @property
    def max_attempts(self) -> int:
        """Executions allowed in all."""
        return self.max_retries + 1
