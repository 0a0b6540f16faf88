"""Shared checks for bad input: the exact error on each core, and the same on both."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import pytest

Case = tuple[str, Callable[[ModuleType], object], type[Exception], str]


def raised(call: Callable[[], object]) -> tuple[type[BaseException], str] | None:
    """The type and message ``call()`` raised, or None if it returned."""
    try:
        call()
    except Exception as error:
        return type(error), str(error)
    return None


def bad_input_tests(cases: Sequence[Case]) -> tuple[Callable[..., None], Callable[..., None]]:
    """Two parametrized tests over ``(id, call(core), error, message)`` cases.

    The first checks each core raises exactly ``error(message)``; the second
    that both cores raise the same. Bind them to ``test_*`` names in a module.
    """
    params: list[Any] = [pytest.param(*case[1:], id=case[0]) for case in cases]

    @pytest.mark.parametrize(("call", "error", "message"), params)
    def test_bad_input(
        core: ModuleType,
        call: Callable[[ModuleType], object],
        error: type[Exception],
        message: str,
    ) -> None:
        with pytest.raises(error, match="^" + re.escape(message) + "$"):
            call(core)

    @pytest.mark.parametrize(("call", "error", "message"), params)
    def test_bad_input_same_on_both_cores(
        both_cores: tuple[ModuleType, ModuleType],
        call: Callable[[ModuleType], object],
        error: type[Exception],
        message: str,
    ) -> None:
        outcomes = [raised(lambda m=module: call(m)) for module in both_cores]
        assert outcomes[0] == outcomes[1] == (error, message)

    return test_bad_input, test_bad_input_same_on_both_cores
