"""Turning a user's handler into a call that takes a task.

A handler's first parameter receives the task's args; every other parameter is
resolved once, at ``WorkerBuilder.build()``, from its annotation. A parameter
nothing can supply is a :class:`BuildError` naming it, not a runtime surprise.

A handler is an ``async def`` or a plain ``def`` returning its result. A
generator function or an async generator function is refused at build: calling
it runs none of its body. A plain ``def`` that returns an awaitable (``lambda
to: send(to)``, a decorator without ``functools.wraps``) has it awaited, so the
work runs; one that returns a generator fails the task with a ``TypeError``
(see :func:`finish_returned`). Only the plain-``def`` path pays for that check.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from .._errors import BuildError, MissingDataError
from .._implementation import Attempt, Extensions, Parts, Task, TaskId
from ._context import WorkerContext

__all__ = [
    "PLAIN_RESULTS",
    "RETURNS_LATER",
    "Data",
    "Handler",
    "Meta",
    "finish_returned",
    "resolve_handler",
]

T = TypeVar("T")


class _DataMarker:
    def __repr__(self) -> str:
        return "Data"


class _MetaMarker:
    def __repr__(self) -> str:
        return "Meta"


_DATA = _DataMarker()
_META = _MetaMarker()

Data = Annotated[T, _DATA]
"""``db: Data[Database]`` receives the ``Database`` given to ``WorkerBuilder.data()``
(or to ``TaskBuilder.data()`` for that task, which wins). Type checkers see ``Database``."""

Meta = Annotated[T, _META]
"""``m: Meta[Tenant]`` receives the ``Tenant`` stored with ``TaskBuilder.meta()``.
A dict decoded by a persistent backend is turned back into ``Tenant(**dict)``."""

Resolver = Callable[[Task], Any]


@dataclass(frozen=True, slots=True)
class Handler:
    """A resolved handler: how the worker calls it."""

    function: Callable[..., Any]
    is_async: bool
    args_only: bool
    """True when the handler takes nothing but the args (the fastest path)."""
    call: Callable[[Task], Any]
    """``call(task)``: a coroutine when ``is_async``, else what the handler returned
    (check it against :data:`RETURNS_LATER`)."""


RETURNS_LATER: tuple[type, ...] = (
    types.CoroutineType,
    types.GeneratorType,
    types.AsyncGeneratorType,
    Awaitable,
)
"""What a plain ``def`` handler can return that is not its result yet.

After calling a plain ``def`` handler (never an ``async def`` one) the worker
checks ``type(result) not in PLAIN_RESULTS and isinstance(result,
RETURNS_LATER)`` and, if so, lets :func:`finish_returned` decide.
"""

PLAIN_RESULTS: frozenset[type] = frozenset(
    {type(None), bool, int, float, str, bytes, dict, list, tuple}
)
"""Result types that are never awaitable: a set lookup spares the common results
the ``isinstance`` check against an ABC (about 0.2 µs)."""


def handler_name(function: Callable[..., Any]) -> str:
    """``function``'s qualified name, or its repr."""
    name = getattr(function, "__qualname__", None)
    if not isinstance(name, str):
        name = getattr(type(function), "__qualname__", None)
    return name if isinstance(name, str) else repr(function)


async def finish_returned(result: Any, function: Callable[..., Any]) -> Any:
    """The result of a plain ``def`` handler that returned something in :data:`RETURNS_LATER`.

    An awaitable (a coroutine from ``lambda to: send(to)``, an object with
    ``__await__``) is awaited: its value is the result. A generator or an async
    generator raises ``TypeError``: the handler's work never ran, and
    recording the task Done would lie.
    """
    if inspect.isawaitable(result):
        return await result
    kind = "an async generator" if isinstance(result, types.AsyncGeneratorType) else "a generator"
    if isinstance(result, types.GeneratorType):
        result.close()
    raise TypeError(
        f"handler {handler_name(function)!r} returned {kind} instead of a result, so "
        f"nothing of its work ran; a handler must be an async def, or a plain def "
        f"returning its result"
    )


def _missing_meta(cls: type, name: str) -> MissingDataError:
    error = MissingDataError(cls)
    error.add_note(f"handler parameter {name!r} wants Meta[{cls.__qualname__}]")
    return error


def _data_resolver(cls: type, name: str, worker_data: Extensions, default: Any) -> Resolver:
    fallback = worker_data.get(cls)
    if fallback is None and default is inspect.Parameter.empty:
        raise BuildError(
            "UnresolvableParameter",
            f"handler parameter {name!r}: no Data[{cls.__qualname__}] was given to "
            f"WorkerBuilder.data(); add one, or give the parameter a default to rely on "
            f"values set per task with TaskBuilder.data()",
        )
    if fallback is None:
        fallback = default

    def resolve(task: Task) -> Any:
        value = task.parts.data.get(cls)
        return fallback if value is None else value

    return resolve


def _meta_resolver(cls: type, name: str, default: Any) -> Resolver:
    key = cls.__qualname__
    full = f"{cls.__module__}.{key}"

    def resolve(task: Task) -> Any:
        ctx = task.parts.ctx
        value = ctx.get(key) if isinstance(ctx, dict) else getattr(ctx, "get", lambda _k: None)(key)
        if value is None:
            if default is not inspect.Parameter.empty:
                return default
            raise _missing_meta(cls, name)
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            try:
                return cls(**value)
            except TypeError as error:
                raise TypeError(
                    f"handler parameter {name!r} wants Meta[{full}], but the task's "
                    f"metadata {key!r} does not fit it: {error}"
                ) from error
        other = type(value)
        raise TypeError(
            f"handler parameter {name!r} wants Meta[{full}], but the task's metadata "
            f"{key!r} holds a {other.__module__}.{other.__qualname__} (two classes share "
            f"the qualified name {key!r})"
        )

    return resolve


def _resolver_for(
    name: str,
    annotation: Any,
    default: Any,
    context: WorkerContext,
    worker_data: Extensions,
) -> tuple[Resolver, bool]:
    """A function giving the parameter's value for a task, and whether it is async."""
    if typing.get_origin(annotation) is Annotated:
        inner, *markers = typing.get_args(annotation)
        if _DATA in markers:
            return _data_resolver(inner, name, worker_data, default), False
        if _META in markers:
            return _meta_resolver(inner, name, default), False
        annotation = inner
    if annotation is WorkerContext:
        return (lambda _task: context), False
    if annotation is Attempt:
        return (lambda task: task.parts.attempt), False
    if annotation is TaskId:
        return (lambda task: task.parts.task_id), False
    if annotation is Parts:
        return (lambda task: task.parts), False
    if annotation is Task:
        return (lambda task: task), False
    if annotation is Extensions:
        return (lambda task: task.parts.data), False
    from_request = getattr(annotation, "from_request", None)
    if isinstance(annotation, type) and callable(from_request):
        return from_request, inspect.iscoroutinefunction(from_request)
    if annotation is inspect.Parameter.empty:
        problem = "has no annotation"
    else:
        problem = f"is annotated {annotation!r}, which nothing can supply"
    raise BuildError(
        "UnresolvableParameter",
        f"handler parameter {name!r} {problem}; use WorkerContext, Attempt, TaskId, "
        f"Parts, Task, Extensions, Data[T], Meta[T] or a class with a from_request(task) "
        f"classmethod",
    )


def _generator_kind(function: Callable[..., Any]) -> str | None:
    """ "a generator function" or "an async generator function" if calling
    ``function`` (or a callable object's ``__call__``) only makes a generator."""
    call = getattr(function, "__call__", None)  # noqa: B004 - callable objects
    for candidate in (function, call):
        if candidate is None:
            continue
        if inspect.isasyncgenfunction(candidate):
            return "an async generator function"
        if inspect.isgeneratorfunction(candidate):
            return "a generator function"
    return None


def _is_async(function: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 - callable objects
    return call is not None and inspect.iscoroutinefunction(call)


def resolve_handler(
    function: Callable[..., Any], context: WorkerContext, worker_data: Extensions
) -> Handler:
    """Inspect ``function`` once and build the per-task call for the worker."""
    if not callable(function):
        raise BuildError("InvalidHandler", f"handler must be callable, got {function!r}")
    kind = _generator_kind(function)
    if kind is not None:
        raise BuildError(
            "InvalidHandler",
            f"handler {handler_name(function)!r} is {kind}: calling it runs none of its "
            f"body, so no task would ever be done; make it an async def (or a plain def) "
            f"that returns the result",
        )
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise BuildError("InvalidHandler", f"cannot read the signature of {function!r}") from exc
    target = function if inspect.isroutine(function) else type(function).__call__
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception as exc:
        raise BuildError(
            "InvalidHandler", f"cannot resolve the annotations of {function!r}: {exc}"
        ) from exc

    params = list(signature.parameters.values())
    positional_kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )
    if not params or params[0].kind not in positional_kinds:
        raise BuildError(
            "InvalidHandler",
            f"handler {getattr(function, '__qualname__', function)!r} must take the task's "
            f"args as its first positional parameter",
        )
    positional: list[Resolver] = []
    keyword: dict[str, Resolver] = {}
    has_async = False
    for param in params[1:]:
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, param.annotation)
        resolver, is_async = _resolver_for(
            param.name, annotation, param.default, context, worker_data
        )
        has_async = has_async or is_async
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            keyword[param.name] = resolver
        else:
            positional.append(resolver)

    is_async = _is_async(function)
    args_only = not positional and not keyword
    call = _make_call(function, positional, keyword, is_async, has_async, args_only)
    return Handler(function, is_async or has_async, args_only, call)


def _make_call(
    function: Callable[..., Any],
    positional: list[Resolver],
    keyword: dict[str, Resolver],
    is_async: bool,
    has_async: bool,
    args_only: bool,
) -> Callable[[Task], Any]:
    if args_only:
        return lambda task: function(task.args)
    if has_async:

        async def call_with_async_resolvers(task: Task) -> Any:
            values = [await _maybe_await(r(task)) for r in positional]
            named = {name: await _maybe_await(r(task)) for name, r in keyword.items()}
            result = function(task.args, *values, **named)
            if is_async:
                return await result
            if type(result) not in PLAIN_RESULTS and isinstance(result, RETURNS_LATER):
                return await finish_returned(result, function)  # a plain def's awaitable
            return result

        return call_with_async_resolvers
    if not keyword:
        return lambda task: function(task.args, *[r(task) for r in positional])
    return lambda task: function(
        task.args,
        *[r(task) for r in positional],
        **{name: r(task) for name, r in keyword.items()},
    )


async def _maybe_await(value: Any) -> Any:
    if isinstance(value, Awaitable):
        return await value
    return value
