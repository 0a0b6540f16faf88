"""CircuitBreakerLayer: stop pulling tasks while what they depend on keeps failing.

A task layer. **Closed**: tasks run; ``failure_threshold`` failures in a row
open the circuit. **Open**: the layer is not ready, so the worker pulls nothing
(backpressure) and sleeps until ``recovery_timeout`` has passed since the
circuit opened; then the circuit is half open. **HalfOpen**: at most
``half_open_max_calls`` trial tasks run. The circuit closes once enough trials
succeeded (see :attr:`CircuitBreakerConfig.success_threshold`) and opens again
(a new ``recovery_timeout``) as soon as too many failed for that to happen.
Results of tasks admitted before the last change of state are ignored.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import trio

from .._errors import CircuitOpenError
from .._implementation import Task
from .._worker._service import NotReadyError, Service, ready_nowait_of
from ._common import check_count, check_seconds
from ._limits import OverloadedError

__all__ = [
    "CircuitBreakerConfig",
    "CircuitBreakerLayer",
    "CircuitBreakerStatistics",
    "CircuitOpenError",
    "CircuitState",
]


class CircuitState(enum.Enum):
    """The states of a circuit breaker."""

    Closed = "Closed"
    """Tasks run; failures in a row are counted."""
    Open = "Open"
    """Nothing runs until the recovery timeout has passed."""
    HalfOpen = "HalfOpen"
    """A few trial tasks run to decide between Closed and Open."""

    def __str__(self) -> str:
        return self.value


# Module constants: a global lookup costs less than an Enum attribute per task.
_CLOSED = CircuitState.Closed
_OPEN = CircuitState.Open
_HALF_OPEN = CircuitState.HalfOpen


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    """How a :class:`CircuitBreakerLayer` decides (apalis's four fields, all honoured).

    Seconds may be given as int, float or ``timedelta``; bad values raise
    ``TypeError``/``ValueError`` naming the field.
    """

    failure_threshold: int = 5
    """Failures in a row, while Closed, that open the circuit (a success resets the count)."""
    recovery_timeout: float | timedelta = 60.0
    """Seconds the circuit stays Open before trial tasks may run (0 allowed)."""
    success_threshold: float = 0.5
    """The fraction of the ``half_open_max_calls`` trials that must succeed, in (0, 1].

    The circuit closes as soon as ``ceil(success_threshold * half_open_max_calls)``
    trials (at least one) have succeeded, and opens again as soon as more than
    ``half_open_max_calls`` minus that number have failed. With the defaults
    (0.5 of 3 calls) two successes close it and two failures reopen it; 1.0
    needs every trial to succeed.
    """
    half_open_max_calls: int = 3
    """Trial tasks admitted while HalfOpen (the others wait for the verdict)."""
    required_successes: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "CircuitBreakerConfig"
        check_count(owner, "failure_threshold", self.failure_threshold)
        recovery = check_seconds(owner, "recovery_timeout", self.recovery_timeout, allow_zero=True)
        object.__setattr__(self, "recovery_timeout", recovery)
        threshold = self.success_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(
                f"{owner}: success_threshold must be a number, "
                f"got {type(threshold).__name__} {threshold!r}"
            )
        if not 0 < threshold <= 1:
            raise ValueError(
                f"{owner}: success_threshold must be a fraction in (0, 1], got {threshold!r}"
            )
        object.__setattr__(self, "success_threshold", float(threshold))
        calls = check_count(owner, "half_open_max_calls", self.half_open_max_calls)
        # Rounded first so 0.7 * 10 (7.000000000000001) asks for 7, not 8.
        required = max(1, math.ceil(round(threshold * calls, 9)))
        object.__setattr__(self, "required_successes", required)


@dataclass(frozen=True, slots=True)
class CircuitBreakerStatistics:
    """A snapshot of a circuit breaker."""

    state: CircuitState
    consecutive_failures: int
    """Failures in a row while Closed."""
    trial_calls: int
    """Trial tasks admitted in the current HalfOpen period."""
    trial_successes: int
    trial_failures: int
    opened_total: int
    """How many times the circuit opened."""
    rejected_total: int
    """Tasks handed back because the circuit could not admit them."""
    recovery_at: float | None
    """While Open: the trio time at which trials may start."""


class _Breaker:
    """The state machine, shared by every service the layer builds."""

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self.config = config
        self.recovery_timeout = cast(float, config.recovery_timeout)  # seconds after __post_init__
        self.state = _CLOSED
        # Bumped on every change of state: results of tasks admitted before are stale.
        self.generation = 0
        self.consecutive_failures = 0
        self.opened_at = 0.0
        self.trial_calls = 0
        self.trial_successes = 0
        self.trial_failures = 0
        self.opened_total = 0
        self.rejected_total = 0
        self._lot: trio.lowlevel.ParkingLot | None = None

    # -- transitions ---------------------------------------------------------

    def _change(self, state: CircuitState) -> None:
        self.state = state
        self.generation += 1
        self.trial_calls = self.trial_successes = self.trial_failures = 0
        if state is _OPEN:
            self.opened_at = trio.current_time()
            self.opened_total += 1
        self.consecutive_failures = 0
        if self._lot:
            self._lot.unpark_all()

    def _recovery_due(self) -> bool:
        if trio.current_time() >= self.opened_at + self.recovery_timeout:
            self._change(_HALF_OPEN)
            return True
        return False

    # -- admission -------------------------------------------------------------
    #
    # Nothing is reserved ahead of a call: a trial slot is taken by the call
    # itself and given back if that call ends without a verdict, so a loop
    # that stops or goes idle can never hold the circuit half open forever.

    def can_admit(self) -> bool:
        """Whether a call would be admitted now (moving Open to HalfOpen when due)."""
        state = self.state
        if state is _CLOSED:
            return True
        if state is _OPEN and not self._recovery_due():
            return False
        return self.trial_calls < self.config.half_open_max_calls

    async def wait_ready(self) -> None:
        while not self.can_admit():
            if self.state is _OPEN:
                await trio.sleep_until(self.opened_at + self.recovery_timeout)
            else:
                if self._lot is None:
                    self._lot = trio.lowlevel.ParkingLot()
                await self._lot.park()

    def admit_call(self) -> int:
        """The generation the call runs in; raises CircuitOpenError if it may not run."""
        if self.state is _CLOSED:
            return self.generation
        if not self.can_admit():
            self.rejected_total += 1
            raise CircuitOpenError(f"circuit breaker is {self.state.value}: task handed back")
        if self.state is _HALF_OPEN:
            self.trial_calls += 1
        return self.generation

    def abandon(self, generation: int) -> None:
        """A call ended without a verdict: give its trial slot back."""
        if generation == self.generation and self.state is _HALF_OPEN:
            self.trial_calls -= 1
            if self._lot:
                self._lot.unpark_all()

    # -- results -----------------------------------------------------------------

    def record(self, generation: int, success: bool) -> None:
        if generation != self.generation:
            return
        config = self.config
        if self.state is _CLOSED:
            if success:
                self.consecutive_failures = 0
            else:
                self.consecutive_failures += 1
                if self.consecutive_failures >= config.failure_threshold:
                    self._change(_OPEN)
        elif self.state is _HALF_OPEN:
            if success:
                self.trial_successes += 1
                if self.trial_successes >= config.required_successes:
                    self._change(_CLOSED)
            else:
                self.trial_failures += 1
                allowed = config.half_open_max_calls - config.required_successes
                if self.trial_failures > allowed:
                    self._change(_OPEN)

    def statistics(self) -> CircuitBreakerStatistics:
        recovery_at = self.opened_at + self.recovery_timeout if self.state is _OPEN else None
        return CircuitBreakerStatistics(
            self.state,
            self.consecutive_failures,
            self.trial_calls,
            self.trial_successes,
            self.trial_failures,
            self.opened_total,
            self.rejected_total,
            recovery_at,
        )


class CircuitBreakerLayer:
    """Opens the circuit after repeated failures; see the module documentation.

    ``WorkerBuilder.break_circuit(config=None)`` is the shortcut. A failure is
    an exception from the services inside (the handler's, after the backend
    recorded it); a task handed back by an inner circuit or shed by a
    ``LoadShedLayer`` is neither a success nor a failure. The state lives in
    the layer: every worker built with the same instance shares one circuit
    (a circuit guards what the tasks call, not a worker).
    """

    def __init__(self, config: CircuitBreakerConfig | None = None) -> None:
        if config is None:
            config = CircuitBreakerConfig()
        elif not isinstance(config, CircuitBreakerConfig):
            raise TypeError(
                f"CircuitBreakerLayer: config must be a CircuitBreakerConfig, "
                f"got {type(config).__name__} {config!r}"
            )
        self.config = config
        self._breaker = _Breaker(config)

    @property
    def state(self) -> CircuitState:
        """The current state (a due recovery shows once a worker asks for readiness)."""
        return self._breaker.state

    def statistics(self) -> CircuitBreakerStatistics:
        """A snapshot of the circuit."""
        return self._breaker.statistics()

    def layer(self, inner: Service) -> Service:
        return _CircuitBreakerService(inner, self._breaker)

    def __repr__(self) -> str:
        return f"CircuitBreakerLayer({self.config!r})"


class _CircuitBreakerService:
    __slots__ = ("_breaker", "_inner", "_inner_nowait")

    def __init__(self, inner: Service, breaker: _Breaker) -> None:
        self._inner = inner
        self._inner_nowait = ready_nowait_of(inner)
        self._breaker = breaker

    async def ready(self) -> None:
        """Wait while the circuit is Open (until recovery is due) or its trials are taken."""
        breaker = self._breaker
        if breaker.state is not _CLOSED:
            await breaker.wait_ready()

    def ready_nowait(self) -> bool:
        """Whether a task may run now (and the services inside are ready too)."""
        if not self._breaker.can_admit():
            return False
        inner_nowait = self._inner_nowait
        return inner_nowait is None or inner_nowait()

    async def __call__(self, task: Task) -> Any:
        breaker = self._breaker
        generation = breaker.admit_call()
        try:
            result = await self._inner(task)
        except (NotReadyError, OverloadedError):
            breaker.abandon(generation)
            raise
        except Exception:
            breaker.record(generation, False)
            raise
        except BaseException:
            breaker.abandon(generation)
            raise
        breaker.record(generation, True)
        return result
