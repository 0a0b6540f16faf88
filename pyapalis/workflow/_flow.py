"""The workflow definition: an immutable, typed list of steps (apalis-workflow's builder).

``Workflow(name)`` starts an empty definition; ``and_then``, ``delay_for``,
``fan_out`` and ``fan_in`` each return a new, longer one, so a definition can
be shared and extended without surprises. A definition does nothing on its
own: :meth:`Workflow.on` binds it to a backend (see ``_runner.py``), whose
tasks then carry each run's state.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ._messages import check_name

if TYPE_CHECKING:
    from ._runner import WorkflowBackend, WorkflowRunner

In = TypeVar("In")
Current = TypeVar("Current", covariant=True)
New = TypeVar("New")
Item = TypeVar("Item")

StepFunction = Callable[[Any], Any]
"""What a step runs: one argument, the previous step's output; sync or async."""


class StepKind(enum.Enum):
    """How a step runs: once (``then``), or once per item of its input (``fan_out``)."""

    then = "then"
    fan_out = "fan_out"


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a definition: its function, kind, delay before it and attempt budget."""

    function: StepFunction
    kind: StepKind
    delay: float
    attempts: int | None

    @property
    def name(self) -> str:
        """The function's name, as status reports show it."""
        return getattr(self.function, "__qualname__", None) or repr(self.function)


def _check_delay(seconds: object) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"delay_for: seconds must be a number, got {seconds!r}")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"delay_for: seconds must be finite and >= 0, got {seconds!r}")
    return float(seconds)


def _check_attempts(attempts: object, where: str) -> int | None:
    if attempts is None:
        return None
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        raise TypeError(f"{where}: attempts must be an int or None, got {attempts!r}")
    if attempts < 1:
        raise ValueError(f"{where}: attempts must be >= 1, got {attempts!r}")
    return attempts


class Workflow(Generic[In, Current]):
    """A durable chain of steps, each run as a task of one backend.

    ``In`` is what a run starts with, ``Current`` what the last step so far
    returns: a new ``Workflow[int, int]("sums")`` takes an ``int`` and hands
    it to the first step, and each step added moves ``Current`` on::

        flow = (Workflow[int, int]("sums")
                .and_then(numbers)      # int -> list[int]
                .fan_out(square)        # one task per number
                .fan_in(total))         # list of the squares -> int

    Each method returns a new definition; the name identifies the workflow in
    its tasks' ids and args (letters, digits, ``-``, ``_`` and ``.``).
    """

    __slots__ = ("_delay", "_name", "_steps")

    def __init__(self, name: str) -> None:
        self._name = check_name(name, "Workflow: name")
        self._steps: tuple[Step, ...] = ()
        self._delay = 0.0

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self._name

    @property
    def steps(self) -> tuple[Step, ...]:
        """The steps, in order."""
        return self._steps

    def _with(self, step: Step) -> Any:
        longer: Workflow[Any, Any] = Workflow(self._name)
        longer._steps = (*self._steps, step)
        return longer

    def _step(self, function: object, kind: StepKind, attempts: object, where: str) -> Step:
        if not callable(function):
            raise TypeError(f"{where}: the step must be callable, got {function!r}")
        return Step(function, kind, self._delay, _check_attempts(attempts, where))

    @overload
    def and_then(
        self, function: Callable[[Current], Awaitable[New]], *, attempts: int | None = None
    ) -> Workflow[In, New]: ...
    @overload
    def and_then(
        self, function: Callable[[Current], New], *, attempts: int | None = None
    ) -> Workflow[In, New]: ...
    def and_then(self, function: StepFunction, *, attempts: int | None = None) -> Any:
        """Add a step that runs ``function`` on the previous step's output.

        The first step receives the run's input. ``attempts`` is the step's
        budget of executions (default: the worker's retry policy); a step that
        fails after it fails the run.
        """
        return self._with(self._step(function, StepKind.then, attempts, "and_then"))

    def delay_for(self, seconds: float) -> Workflow[In, Current]:
        """Run the next step ``seconds`` after the previous one finished.

        The delay is the next task's ``run_at``: no worker waits through it,
        and it survives restarts. Delays in a row add up.
        """
        longer: Workflow[In, Current] = Workflow(self._name)
        longer._steps = self._steps
        longer._delay = self._delay + _check_delay(seconds)
        return longer

    @overload
    def fan_out(
        self: Workflow[In, Iterable[Item]],
        function: Callable[[Item], Awaitable[New]],
        *,
        attempts: int | None = None,
    ) -> Workflow[In, list[New]]: ...
    @overload
    def fan_out(
        self: Workflow[In, Iterable[Item]],
        function: Callable[[Item], New],
        *,
        attempts: int | None = None,
    ) -> Workflow[In, list[New]]: ...
    def fan_out(self, function: StepFunction, *, attempts: int | None = None) -> Any:
        """Add a step that runs ``function`` once per item of the previous output.

        Each item is its own task (its own retries), so items run in parallel
        on as many workers as there are. The step's output is the list of the
        results, in the items' order, handed to the next step once every item
        has finished (see :meth:`fan_in`). It cannot be the first step.
        """
        if not self._steps:
            raise ValueError(
                "fan_out: a workflow starts with and_then; fan_out needs a step before it "
                "that returns the items"
            )
        return self._with(self._step(function, StepKind.fan_out, attempts, "fan_out"))

    @overload
    def fan_in(
        self: Workflow[In, list[Item]],
        function: Callable[[list[Item]], Awaitable[New]],
        *,
        attempts: int | None = None,
    ) -> Workflow[In, New]: ...
    @overload
    def fan_in(
        self: Workflow[In, list[Item]],
        function: Callable[[list[Item]], New],
        *,
        attempts: int | None = None,
    ) -> Workflow[In, New]: ...
    def fan_in(self, function: StepFunction, *, attempts: int | None = None) -> Any:
        """Add the step that joins a fan-out: it runs once, when every item has
        finished, with the list of their results.

        Exactly once per run, however many workers finish the last items at
        the same moment. Same as :meth:`and_then`, but it checks that a
        :meth:`fan_out` comes right before it.
        """
        if not self._steps or self._steps[-1].kind is not StepKind.fan_out:
            raise ValueError("fan_in: the step before it must be a fan_out")
        return self._with(self._step(function, StepKind.then, attempts, "fan_in"))

    def on(self, backend: WorkflowBackend) -> WorkflowRunner[In, Current]:
        """Bind the definition to ``backend``: start runs, handle their tasks, look
        them up. Workers running the runs must consume that same backend."""
        from ._runner import WorkflowRunner

        if not self._steps:
            raise ValueError(f"Workflow.on: workflow {self._name!r} has no steps")
        if self._delay:
            raise ValueError(f"Workflow.on: workflow {self._name!r} ends with a delay_for")
        return WorkflowRunner(self, backend)

    def __repr__(self) -> str:
        steps = ", ".join(f"{step.kind.value}({step.name})" for step in self._steps)
        return f"Workflow({self._name!r}: {steps})"
