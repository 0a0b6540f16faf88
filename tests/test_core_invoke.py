"""The per-execution part of the core, compiled and pure Python alike.

``Invoker`` (the handler called with the arguments its plan resolves),
``Judge`` (the one rule for what an outcome means), ``retry_delay`` (the one
place a retry delay is chosen), ``SyncDone`` (a success recorded without
awaiting) and ``ready`` (a plain def's result as an awaitable). Every test runs
on both cores (the ``core`` fixture).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable, Generator
from types import ModuleType
from typing import Any

import pytest
import trio

from pyapalis import (
    AbortError,
    BackoffMode,
    DeferredError,
    RetryAfterError,
    Status,
    TaskFailedError,
)


async def _finish_returned(result: Any, function: Callable[..., Any]) -> Any:
    return ("finished", await result)


def _timed(invoker: Any, task: Any, seconds: float) -> tuple[str, Any, Any, float]:
    return ("timed", invoker, task, seconds)


def invoker(
    core: ModuleType,
    function: Callable[..., Any],
    steps: list[Any],
    keywords: tuple[tuple[str, Any], ...] = (),
    *,
    is_async: bool = True,
    timeout: float | None = None,
) -> Any:
    return core.Invoker(
        function,
        steps,
        keywords,
        is_async=is_async,
        timeout=timeout,
        timed=_timed,
        plain_results=frozenset({type(None), int, str}),
        returns_later=(Awaitable, Generator),
        finish_returned=_finish_returned,
    )


def run(awaitable: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await awaitable

    return trio.run(main)


# -- Invoker ------------------------------------------------------------------------------


def test_begin_counts_the_attempt_marks_running_and_calls_the_handler(core: ModuleType) -> None:
    seen: list[Any] = []

    async def handler(item: Any) -> Any:
        seen.append(item)
        return item * 2

    task = core.Task(21)
    call = invoker(core, handler, [core.Step(core.STEP_ARGS)]).begin(task)
    assert task.parts.attempt.current() == 1
    assert task.parts.status is Status.Running
    assert seen == []  # the coroutine is the handler's own: nothing ran yet
    assert run(call) == 42
    assert seen == [21]


def test_every_step_kind_resolves_its_value(core: ModuleType) -> None:
    class Db:
        pass

    class Tenant:
        pass

    worker_db, task_db, fallback = Db(), Db(), Tenant()
    constant = object()
    got: list[Any] = []

    def handler(*args: Any, **named: Any) -> None:
        got.append((args, named))

    steps = [
        core.Step(core.STEP_ARGS),
        core.Step(core.STEP_CONSTANT, constant),
        core.Step(core.STEP_ATTEMPT),
        core.Step(core.STEP_TASK_ID),
        core.Step(core.STEP_PARTS),
        core.Step(core.STEP_TASK),
        core.Step(core.STEP_EXTENSIONS),
        core.Step(core.STEP_DATA, Db, worker_db),
        core.Step(core.STEP_CALL, lambda task: ("called", task.args)),
    ]
    keywords = (("tenant", core.Step(core.STEP_DATA, Tenant, fallback)),)
    task = core.TaskBuilder("x").id("t-1").data(task_db).build()
    run(invoker(core, handler, steps, keywords, is_async=False).begin(task))
    [(args, named)] = got
    assert args == (
        "x",
        constant,
        task.parts.attempt,
        core.TaskId("t-1"),
        task.parts,
        task,
        task.parts.data,
        task_db,  # the task's own value wins over the worker's
        ("called", "x"),
    )
    assert named == {"tenant": fallback}  # the task has none: the worker's (or the default)
    # Without a value of the task, Data falls back.
    got.clear()
    run(invoker(core, handler, steps[:1] + steps[7:8], is_async=False).begin(core.Task("y")))
    assert got == [(("y", worker_db), {})]


@pytest.mark.parametrize("arity", [1, 2, 3, 4, 6])
def test_any_number_of_positional_arguments(core: ModuleType, arity: int) -> None:
    def handler(*args: Any) -> tuple[Any, ...]:
        return args

    steps = [core.Step(core.STEP_ARGS)] + [
        core.Step(core.STEP_CONSTANT, i) for i in range(1, arity)
    ]
    result = run(invoker(core, handler, steps, is_async=False).begin(core.Task(0)))
    assert result == tuple(range(arity))


def test_a_plain_def_result_is_ready_unless_it_returns_later(core: ModuleType) -> None:
    async def later() -> str:
        return "later"

    results: list[Any] = ["value", None, 7, [1], later()]

    def handler(item: int) -> Any:
        return results[item]

    made = invoker(core, handler, [core.Step(core.STEP_ARGS)], is_async=False)
    for i, expected in enumerate(["value", None, 7, [1]]):
        ready = made.begin(core.Task(i))
        assert inspect.isawaitable(ready)
        assert run(ready) == expected
    assert run(made.begin(core.Task(4))) == ("finished", "later")


def test_a_time_limit_goes_through_timed(core: ModuleType) -> None:
    async def handler(item: Any) -> None:
        pass

    worker_limited = invoker(core, handler, [core.Step(core.STEP_ARGS)], timeout=5.0)
    task = core.Task(1)
    assert worker_limited.begin(task) == ("timed", worker_limited, task, 5.0)
    assert task.parts.attempt.current() == 1 and task.parts.status is Status.Running
    own = core.TaskBuilder(2).timeout(2).build()  # the task's own limit wins
    assert worker_limited.begin(own) == ("timed", worker_limited, own, 2.0)
    unlimited = invoker(core, handler, [core.Step(core.STEP_ARGS)])
    assert unlimited.begin(own)[3] == 2.0
    coroutine = unlimited.call(core.Task(3))  # call(): the handler, no counting
    assert run(coroutine) is None


def test_invoker_and_step_refuse_bad_plans(core: ModuleType) -> None:
    with pytest.raises(TypeError, match="function must be callable"):
        invoker(core, "nope", [core.Step(core.STEP_ARGS)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one positional argument"):
        invoker(core, print, [])
    with pytest.raises(TypeError, match="steps must be Step objects"):
        invoker(core, print, ["args"])
    with pytest.raises(TypeError, match="keyword steps must be Step objects"):
        invoker(core, print, [core.Step(core.STEP_ARGS)], (("x", 1),))
    with pytest.raises(ValueError, match="unknown kind 99"):
        core.Step(99)
    with pytest.raises(TypeError, match="a call step needs a callable"):
        core.Step(core.STEP_CALL, 3)
    with pytest.raises((TypeError, AttributeError)):  # the twin does not check types
        invoker(core, print, [core.Step(core.STEP_ARGS)]).begin("not a task")


def test_ready_is_an_awaitable_of_its_value(core: ModuleType) -> None:
    assert run(core.ready((1, 2))) == (1, 2)
    assert run(core.ready(None)) is None
    error = ValueError("a value, not raised")
    assert run(core.ready(error)) is error


# -- Judge and retry_delay -------------------------------------------------------------------


def test_judge_decides_every_outcome(core: ModuleType) -> None:
    judge = core.Judge(3, BackoffMode.constant(5))

    def task(attempt: int, max_attempts: int | None = None) -> Any:
        made = (
            core.Task("x")
            if max_attempts is None
            else core.TaskBuilder("x").attempts(max_attempts).build()
        )
        for _ in range(attempt):
            made.parts.attempt.increment()
        return made

    assert judge.decide(task(1), "value", None) is core.DONE
    assert judge.decide(task(1), None, None) is core.DONE
    assert judge.decide(task(1), 0, None) is core.DONE  # only False itself is a failure
    false = judge.decide(task(1), False, None)
    assert false.status is Status.Pending and false.delay == 5.0
    assert isinstance(false.error, TaskFailedError)
    assert str(false.error) == "Task returned false"
    error = ValueError("boom")
    retried = judge.decide(task(2), None, error)
    assert (retried.status, retried.error, retried.delay) == (Status.Pending, error, 5.0)
    failed = judge.decide(task(3), None, error)  # the budget (3) is used up
    assert (failed.status, failed.error) == (Status.Failed, error)
    assert judge.decide(task(1, max_attempts=1), None, error).status is Status.Failed
    assert judge.decide(task(5, max_attempts=9), None, error).status is Status.Pending
    abort = AbortError("stop")
    killed = judge.decide(task(1, max_attempts=9), None, abort)
    assert (killed.status, killed.error) == (Status.Killed, abort)
    assert judge.decide(task(1), None, RetryAfterError("later", 7)).delay == 7.0
    assert judge.decide(task(1), None, DeferredError("now")).delay == 0.0
    assert core.Judge().decide(task(1), None, error).status is Status.Failed  # one execution
    assert judge.failure("value", None) is None
    assert isinstance(judge.failure(False, None), TaskFailedError)
    assert judge.failure(False, error) is error
    with pytest.raises(ValueError, match="default_attempts must be >= 1"):
        core.Judge(0)


def test_judge_counts_backoff_from_the_attempt(core: ModuleType) -> None:
    judge = core.Judge(10, BackoffMode.exponential(1))
    delays = []
    for attempt in range(1, 5):
        made = core.Task("x")
        for _ in range(attempt):
            made.parts.attempt.increment()
        delays.append(judge.decide(made, None, ValueError()).delay)
    assert delays == [1.0, 2.0, 4.0, 8.0]
    # A task never executed (attempt 0) waits what the first failure would.
    assert judge.decide(core.Task("x"), None, ValueError()).delay == 1.0


def test_retry_delay(core: ModuleType) -> None:
    backoff = BackoffMode.linear(2)
    assert core.retry_delay(ValueError(), 3, backoff) == 6.0
    assert core.retry_delay(ValueError(), 3, None) == 0.0
    assert core.retry_delay(RetryAfterError("x", 1.5), 3, backoff) == 1.5
    assert core.retry_delay(DeferredError("x"), 3, backoff) == 0.0
    jittered = BackoffMode.exponential(8, jitter=1.0, rng=random.Random(1))
    expected = BackoffMode.exponential(8, jitter=1.0, rng=random.Random(1)).delay(2)
    assert core.retry_delay(ValueError(), 2, jittered) == expected


def test_verdict_repr(core: ModuleType) -> None:
    assert repr(core.DONE) == "Verdict(Done)"
    assert repr(core.Verdict(Status.Failed, KeyError("k"))) == "Verdict(Failed: KeyError('k'))"
    assert repr(core.Verdict(Status.Pending, None, 2.0)) == "Verdict(retry after 2.0 s: None)"


# -- SyncDone ------------------------------------------------------------------------------------


def test_sync_done_records_a_success_only_when_it_can(core: ModuleType) -> None:
    acked: list[tuple[Any, ...]] = []
    succeeded: list[tuple[Any, Any]] = []
    listeners: list[object] = []
    sync = core.SyncDone(core.Judge(), listeners, lambda t, r: succeeded.append((t, r)))
    task = core.Task(1)
    assert sync.record(task, "v") is False  # no ack_nowait attached: the caller awaits
    sync.attach(lambda *args: acked.append(args))
    assert sync.record(task, "v") is True
    assert acked == [(task, Status.Done, "v", None)]
    assert succeeded == []  # nobody listens: no event built
    listeners.append(object())
    assert sync.record(task, None) is True
    assert succeeded == [(task, None)]
    assert sync.record(task, False) is False  # a failure: recorded by awaiting
    assert len(acked) == 2
    sync.attach(None)
    assert sync.record(task, "v") is False
