"""Attempt: the execution counter a task shares with its clones."""

from __future__ import annotations

import enum
import operator
import re
from types import ModuleType

import pytest
from _bad_input import raised

MAX = 2**63 - 1  # the compiled counter is a C long long


def test_default_is_zero(core: ModuleType) -> None:
    attempt = core.Attempt()
    assert attempt.current() == 0
    assert int(attempt) == 0


@pytest.mark.parametrize("n", [0, 1, 7, 1000, MAX])
def test_starts_at_n(core: ModuleType, n: int) -> None:
    attempt = core.Attempt(n)
    assert attempt.current() == n
    assert int(attempt) == n
    assert operator.index(attempt) == n
    assert core.Attempt(n=n).current() == n


def test_increment_returns_previous_and_advances(core: ModuleType) -> None:
    attempt = core.Attempt()
    assert attempt.increment() == 0
    assert attempt.current() == 1
    assert attempt.increment() == 1
    assert attempt.increment() == 2
    assert attempt.current() == 3
    assert int(attempt) == 3


def test_increment_from_a_start_value(core: ModuleType) -> None:
    attempt = core.Attempt(5)
    assert attempt.increment() == 5
    assert attempt.current() == 6


def test_first_execution_sees_one(core: ModuleType) -> None:
    # The worker increments when an execution starts: a handler's first run sees 1.
    task = core.Task("x")
    task.parts.attempt.increment()
    assert task.parts.attempt.current() == 1


def test_results_are_plain_ints(core: ModuleType) -> None:
    class Small(enum.IntEnum):
        TWO = 2

    attempt = core.Attempt(Small.TWO)
    assert type(attempt.current()) is int
    assert type(int(attempt)) is int
    assert type(attempt.increment()) is int
    assert attempt.current() == 3


def test_usable_as_an_index(core: ModuleType) -> None:
    assert ["a", "b", "c"][core.Attempt(2)] == "c"


def test_equality_with_attempts_and_ints(core: ModuleType) -> None:
    assert core.Attempt(2) == core.Attempt(2)
    assert core.Attempt(2) != core.Attempt(3)
    assert core.Attempt(2) == 2
    assert 2 == core.Attempt(2)  # noqa: SIM300 - the reflected comparison is the point
    assert core.Attempt(2) != 3
    assert (core.Attempt(2) != 2) is False
    # bool and float are not counts
    assert core.Attempt(1) != True  # noqa: E712
    assert core.Attempt(1) != 1.0
    assert core.Attempt(0) != None  # noqa: E711
    assert core.Attempt(0) != "0"


def test_not_hashable(core: ModuleType) -> None:
    # A mutable counter must not be a dict key.
    with pytest.raises(TypeError, match="unhashable"):
        hash(core.Attempt())


def test_not_ordered(core: ModuleType) -> None:
    with pytest.raises(TypeError):
        _ = core.Attempt(1) < core.Attempt(2)


def test_repr(core: ModuleType) -> None:
    attempt = core.Attempt(3)
    assert repr(attempt) == "Attempt(3)"
    attempt.increment()
    assert repr(attempt) == "Attempt(4)"


def test_counter_at_its_maximum_refuses_to_wrap(core: ModuleType) -> None:
    attempt = core.Attempt(MAX - 1)
    assert attempt.increment() == MAX - 1
    with pytest.raises(
        OverflowError, match=re.escape(f"Attempt: the counter is at its maximum ({MAX})")
    ):
        attempt.increment()
    assert attempt.current() == MAX


BAD: list[tuple[str, object, type[Exception], str]] = [
    ("negative", -1, ValueError, "Attempt: n must be >= 0, got -1"),
    ("very negative", -(2**70), ValueError, f"Attempt: n must be >= 0, got {-(2**70)}"),
    ("too large", MAX + 1, ValueError, f"Attempt: n must be <= {MAX}, got {MAX + 1}"),
    ("float", 1.0, TypeError, "Attempt: n must be an int, got float 1.0"),
    ("nan", float("nan"), TypeError, "Attempt: n must be an int, got float nan"),
    ("bool", True, TypeError, "Attempt: n must be an int, got bool True"),
    ("str", "1", TypeError, "Attempt: n must be an int, got str '1'"),
    ("none", None, TypeError, "Attempt: n must be an int, got NoneType None"),
]


BAD_PARAMS = [pytest.param(*case[1:], id=case[0]) for case in BAD]


@pytest.mark.parametrize(("value", "error", "message"), BAD_PARAMS)
def test_bad_start_value(
    core: ModuleType, value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        core.Attempt(value)


@pytest.mark.parametrize(("value", "error", "message"), BAD_PARAMS)
def test_bad_start_value_same_on_both_cores(
    both_cores: tuple[ModuleType, ModuleType],
    value: object,
    error: type[Exception],
    message: str,
) -> None:
    outcomes = [raised(lambda m=module: m.Attempt(value)) for module in both_cores]
    assert outcomes[0] == outcomes[1] == (error, message)


def test_parts_attempt_setter(core: ModuleType) -> None:
    parts = core.Task("x").parts
    attempt = core.Attempt(4)
    parts.attempt = attempt
    assert parts.attempt is attempt
    with pytest.raises(TypeError, match=r"^attempt: expected Attempt, got int$"):
        parts.attempt = 4
    assert parts.attempt is attempt
    other = core.Parts(attempt=attempt)
    assert other.attempt is attempt


def test_attempt_of_the_other_core_is_rejected(both_cores: tuple[ModuleType, ModuleType]) -> None:
    compiled, python = both_cores
    with pytest.raises(TypeError, match=r"^attempt: expected Attempt, got Attempt$"):
        compiled.Task("x").parts.attempt = python.Attempt()
    with pytest.raises(TypeError, match=r"^attempt: expected Attempt, got Attempt$"):
        python.Task("x").parts.attempt = compiled.Attempt()


def test_clone_shares_the_attempt(core: ModuleType) -> None:
    task = core.Task("x")
    clone = task.clone()
    grandchild = clone.clone()
    assert clone.parts.attempt is task.parts.attempt
    assert grandchild.parts.attempt is task.parts.attempt
    assert clone.parts.attempt.increment() == 0
    assert task.parts.attempt.current() == 1
    assert task.parts.attempt.increment() == 1
    assert grandchild.parts.attempt.current() == 2
    assert grandchild.parts.attempt.increment() == 2
    assert task.parts.attempt.current() == clone.parts.attempt.current() == 3


def test_each_new_task_gets_its_own_attempt(core: ModuleType) -> None:
    first, second = core.Task("x"), core.Task("x")
    assert first.parts.attempt is not second.parts.attempt
    first.parts.attempt.increment()
    assert second.parts.attempt.current() == 0
