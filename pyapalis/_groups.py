"""Exception groups from nurseries, reduced to what callers of pyapalis expect."""

from __future__ import annotations

from typing import Any

__all__ = ["single_exception"]


def single_exception(group: BaseExceptionGroup[Any]) -> BaseException:
    """The one exception of a nursery's group (a group of several stays a group).

    A run that opens a nursery raises what went wrong in it, not a group of
    one: ``except BaseExceptionGroup as g: raise single_exception(g) from None``.
    """
    while len(group.exceptions) == 1:
        inner: BaseException = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return group
