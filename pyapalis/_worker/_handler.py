"""Resolving a user's handler once, at build: where each of its arguments comes from.

A handler's first parameter receives the task's args; every other parameter is
resolved once, at ``WorkerBuilder.build()``, from its annotation, into a
:class:`~pyapalis._twin.Step` of the plan the compiled ``Invoker`` follows per
execution (a part of the task, the worker's context, a ``Data[T]`` lookup, a
``from_request`` call): injecting costs next to nothing at run time. A
parameter nothing can supply is a :class:`BuildError` naming it, not a runtime
surprise.

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
from typing import Annotated, Any, Protocol, TypeVar, cast, runtime_checkable

from .._errors import BuildError, MissingDataError
from .._implementation import (
    STEP_ARGS,
    STEP_ATTEMPT,
    STEP_CALL,
    STEP_CONSTANT,
    STEP_DATA,
    STEP_EXTENSIONS,
    STEP_PARTS,
    STEP_TASK,
    STEP_TASK_ID,
    Attempt,
    Extensions,
    Parts,
    Step,
    Task,
    TaskId,
)
from ._context import WorkerContext

__all__ = [
    "PLAIN_RESULTS",
    "RETURNS_LATER",
    "Data",
    "FromRequest",
    "Handler",
    "LayerProvided",
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
    """A resolved handler: what to call, and where each of its arguments comes from."""

    function: Callable[..., Any]
    """What the worker calls per execution (the handler, or an adapter awaiting
    ``async`` ``from_request`` resolvers before calling it)."""
    is_async: bool
    """Whether calling ``function`` returns a coroutine."""
    steps: tuple[Step, ...]
    """One :class:`Step` per positional argument of ``function``."""
    keywords: tuple[tuple[str, Step], ...] = ()
    """The keyword-only arguments of ``function`` and their steps."""
    layer_provided: tuple[type[LayerProvided], ...] = ()
    """The parameter types of the handler that only a layer supplies."""

    @property
    def args_only(self) -> bool:
        """True when the handler takes nothing but the args."""
        return len(self.steps) == 1 and not self.keywords and self.steps[0].kind == STEP_ARGS


@runtime_checkable
class FromRequest(Protocol):
    """A handler parameter type that makes its value from the task: ``from_request(task)``.

    The classmethod may be ``async``; the worker awaits it then.
    """

    @classmethod
    def from_request(cls, task: Task) -> Any: ...


@runtime_checkable
class LayerProvided(FromRequest, Protocol):
    """A handler parameter type that only a layer supplies, as ``Runner`` (``LongRunningLayer``).

    Declared by the type: the worker refuses at build a handler that takes
    one when none of its execution layers ``provided_by()`` it, with the
    type's ``missing_layer()`` advice.
    """

    @classmethod
    def provided_by(cls, layer: object) -> bool:
        """Whether ``layer`` supplies this type to the handlers it wraps."""
        ...

    @classmethod
    def missing_layer(cls) -> str:
        """What to add to a builder that lacks the layer ("a LongRunningLayer; add ...")."""
        ...


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


def _data_step(cls: type, name: str, worker_data: Extensions, default: Any) -> Step:
    fallback = worker_data.get(cls)
    if fallback is None and default is inspect.Parameter.empty:
        raise BuildError(
            "UnresolvableParameter",
            f"handler parameter {name!r}: no Data[{cls.__qualname__}] was given to "
            f"WorkerBuilder.data(); add one, or give the parameter a default to rely on "
            f"values set per task with TaskBuilder.data()",
        )
    return Step(STEP_DATA, cls, default if fallback is None else fallback)


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


_FIXED_STEPS: dict[Any, int] = {
    Attempt: STEP_ATTEMPT,
    TaskId: STEP_TASK_ID,
    Parts: STEP_PARTS,
    Task: STEP_TASK,
    Extensions: STEP_EXTENSIONS,
}
"""Annotations whose value is a part of the task."""


def _step_for(
    name: str,
    annotation: Any,
    default: Any,
    context: WorkerContext,
    worker_data: Extensions,
) -> tuple[Step, bool]:
    """Where the parameter's value comes from, and whether producing it must be awaited."""
    if typing.get_origin(annotation) is Annotated:
        inner, *markers = typing.get_args(annotation)
        if _DATA in markers:
            return _data_step(inner, name, worker_data, default), False
        if _META in markers:
            return Step(STEP_CALL, _meta_resolver(inner, name, default)), False
        annotation = inner
    if annotation is WorkerContext:
        return Step(STEP_CONSTANT, context), False
    kind = _FIXED_STEPS.get(annotation) if isinstance(annotation, type) else None
    if kind is not None:
        return Step(kind), False
    if isinstance(annotation, type) and isinstance(annotation, FromRequest):
        from_request = annotation.from_request
        return Step(STEP_CALL, from_request), inspect.iscoroutinefunction(from_request)
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
    """Inspect ``function`` once: where each of its arguments comes from, per task."""
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
    positional: list[Step] = [Step(STEP_ARGS)]
    keyword: list[tuple[str, Step]] = []
    layer_provided: list[type[LayerProvided]] = []
    has_async = False
    for param in params[1:]:
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, param.annotation)
        if isinstance(annotation, type) and isinstance(annotation, LayerProvided):
            layer_provided.append(cast("type[LayerProvided]", annotation))
        step, is_async = _step_for(param.name, annotation, param.default, context, worker_data)
        has_async = has_async or is_async
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            keyword.append((param.name, step))
        else:
            positional.append(step)
    if has_async:
        return _awaiting_resolvers(function, positional, keyword, tuple(layer_provided))
    return Handler(
        function, _is_async(function), tuple(positional), tuple(keyword), tuple(layer_provided)
    )


def _awaiting_resolvers(
    function: Callable[..., Any],
    positional: list[Step],
    keyword: list[tuple[str, Step]],
    layer_provided: tuple[type[LayerProvided], ...],
) -> Handler:
    """A handler some of whose ``from_request`` resolvers are ``async``: an adapter
    of the task awaits them, then calls the handler (and awaits what it returns)."""
    is_async = _is_async(function)

    async def call_with_async_resolvers(task: Task) -> Any:
        values = [await _maybe_await(step.value_for(task)) for step in positional]
        named = {name: await _maybe_await(step.value_for(task)) for name, step in keyword}
        result = function(*values, **named)
        if is_async:
            return await result
        if type(result) not in PLAIN_RESULTS and isinstance(result, RETURNS_LATER):
            return await finish_returned(result, function)  # a plain def's awaitable
        return result

    return Handler(call_with_async_resolvers, True, (Step(STEP_TASK),), (), layer_provided)


async def _maybe_await(value: Any) -> Any:
    if isinstance(value, Awaitable):
        return await value
    return value
