"""TaskBuilder: every method, the seed example, reuse, and the validation of input."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType

import pytest
from _bad_input import bad_input_tests

from pyapalis import Status

SLACK = 0.001  # the cores read the wall clock apart from time.time(): allow rounding


@contextmanager
def wall_clock() -> Iterator[list[float]]:
    """Yields ``[before, after]``: the wall clock read around the block."""
    span = [time.time()]
    yield span
    span.append(time.time())


def assert_about(value: float, now: list[float], offset: float) -> None:
    assert type(value) is float
    assert now[0] + offset - SLACK <= value <= now[1] + offset + SLACK


class Tenant:
    def __init__(self, name: str = "acme") -> None:
        self.name = name


class Outer:
    class Inner:
        pass


def test_seed_example(core: ModuleType) -> None:
    TaskBuilder, TaskId = core.TaskBuilder, core.TaskId
    with wall_clock() as now:
        task = (
            TaskBuilder("my-task").id("task-123").attempts(3).timeout(30).run_in_minutes(10).build()
        )
    assert task.args == "my-task"
    assert task.parts.task_id == TaskId("task-123")
    assert task.parts.max_attempts == 3
    assert task.parts.timeout == 30.0
    assert type(task.parts.timeout) is float
    assert_about(task.parts.run_at, now, 600)
    # everything else keeps its default
    assert task.parts.status is Status.Pending
    assert task.parts.attempt.current() == 0
    assert task.parts.priority == 0
    assert len(task.parts.data) == 0
    assert task.parts.ctx is None


def test_bare_build_has_task_defaults(core: ModuleType) -> None:
    with wall_clock() as now:
        task = core.TaskBuilder({"n": 1}).build()
    assert type(task) is core.Task
    assert task.args == {"n": 1}
    assert task.parts.task_id is None
    assert task.parts.attempt.current() == 0
    assert task.parts.status is Status.Pending
    assert_about(task.parts.run_at, now, 0)
    assert len(task.parts.data) == 0
    assert task.parts.max_attempts is None
    assert task.parts.timeout is None
    assert task.parts.priority == 0
    assert task.parts.ctx is None


def test_task_builder_shortcut(core: ModuleType) -> None:
    builder = core.Task.builder("args")
    assert type(builder) is core.TaskBuilder
    assert builder.build().args == "args"
    assert core.Task.builder("a").id("b").build().task_id == core.TaskId("b")


@pytest.mark.parametrize(
    ("method", "argument"),
    [
        ("id", "x"),
        ("with_task_id", "x"),
        ("attempts", 2),
        ("timeout", 1),
        ("with_status", Status.Queued),
        ("with_ctx", {}),
        ("data", 1),
        ("meta", 1),
        ("priority", 1),
        ("run_at_timestamp", 1.0),
        ("run_at_time", dt.datetime(2030, 1, 1, tzinfo=dt.UTC)),
        ("run_after", 1),
        ("run_in_seconds", 1),
        ("run_in_minutes", 1),
        ("run_in_hours", 1),
    ],
)
def test_every_method_returns_the_builder(core: ModuleType, method: str, argument: object) -> None:
    builder = core.TaskBuilder("x")
    assert getattr(builder, method)(argument) is builder


def test_methods_taking_core_objects_return_the_builder(core: ModuleType) -> None:
    builder = core.TaskBuilder("x")
    assert builder.with_attempt(core.Attempt()) is builder
    assert builder.with_data(core.Extensions()) is builder
    assert builder.id(core.TaskId("x")) is builder


def test_id(core: ModuleType) -> None:
    assert core.TaskBuilder("x").id("abc").build().parts.task_id == core.TaskId("abc")
    given = core.TaskId.generate()
    built = core.TaskBuilder("x").id(given).build().parts.task_id
    assert built == given
    assert str(built) == str(given)
    assert type(built) is core.TaskId
    assert core.TaskBuilder("x").with_task_id("alias").build().task_id == core.TaskId("alias")
    assert core.TaskBuilder("x").id("a").id("b").build().task_id == core.TaskId("b")


@pytest.mark.parametrize("n", [1, 3, 2**31 - 1])
def test_attempts(core: ModuleType, n: int) -> None:
    max_attempts = core.TaskBuilder("x").attempts(n).build().parts.max_attempts
    assert max_attempts == n
    assert type(max_attempts) is int


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (30, 30.0),
        (0.25, 0.25),
        (dt.timedelta(minutes=2), 120.0),
        (dt.timedelta(microseconds=1), 1e-6),
    ],
)
def test_timeout(core: ModuleType, given: object, seconds: float) -> None:
    timeout = core.TaskBuilder("x").timeout(given).build().parts.timeout
    assert timeout == seconds
    assert type(timeout) is float


def test_with_attempt_is_shared_by_every_build(core: ModuleType) -> None:
    attempt = core.Attempt(2)
    builder = core.TaskBuilder("x").with_attempt(attempt)
    first, second = builder.build(), builder.build()
    assert first.parts.attempt is attempt
    assert second.parts.attempt is attempt
    first.parts.attempt.increment()
    assert second.parts.attempt.current() == 3


def test_without_with_attempt_each_build_counts_alone(core: ModuleType) -> None:
    builder = core.TaskBuilder("x")
    first, second = builder.build(), builder.build()
    assert first.parts.attempt is not second.parts.attempt
    first.parts.attempt.increment()
    assert second.parts.attempt.current() == 0


@pytest.mark.parametrize("status", list(Status))
def test_with_status(core: ModuleType, status: Status) -> None:
    assert core.TaskBuilder("x").with_status(status).build().parts.status is status
    assert core.TaskBuilder("x").with_status(status.value).build().parts.status is status


def test_with_ctx(core: ModuleType) -> None:
    backend_ctx = object()
    assert core.TaskBuilder("x").with_ctx(backend_ctx).build().parts.ctx is backend_ctx
    ctx = {"lease": 1}
    built = core.TaskBuilder("x").with_ctx(ctx).build().parts.ctx
    # a dict ctx is copied at build, so tasks of one builder do not share metadata
    assert built == {"lease": 1}
    assert built is not ctx


def test_with_data_is_copied_at_build(core: ModuleType) -> None:
    tenant = Tenant()
    ext = core.Extensions([tenant])
    builder = core.TaskBuilder("x").with_data(ext)
    ext.insert(42)  # after with_data: not seen
    task = builder.build()
    assert task.parts.data is not ext
    assert task.parts.data.get(Tenant) is tenant
    assert int not in task.parts.data
    task.parts.data.insert("s")
    assert str not in ext


def test_data_inserts_by_type(core: ModuleType) -> None:
    first, second = Tenant("first"), Tenant("second")
    task = core.TaskBuilder("x").data(first).data(7).data(second).build()
    assert task.parts.data.get(Tenant) is second
    assert task.parts.data.get(int) == 7
    assert len(task.parts.data) == 2


def test_data_after_with_data_does_not_touch_the_callers_map(core: ModuleType) -> None:
    ext = core.Extensions([Tenant()])
    task = core.TaskBuilder("x").with_data(ext).data(1).build()
    assert int in task.parts.data
    assert Tenant in task.parts.data
    assert int not in ext


def test_with_data_replaces_earlier_data(core: ModuleType) -> None:
    task = core.TaskBuilder("x").data(1).with_data(core.Extensions(["s"])).build()
    assert int not in task.parts.data
    assert task.parts.data.get(str) == "s"


def test_meta_stores_by_class_qualname(core: ModuleType) -> None:
    tenant, inner = Tenant(), Outer.Inner()
    task = core.TaskBuilder("x").meta(tenant).meta(inner).meta("text").build()
    assert task.parts.ctx == {"Tenant": tenant, "Outer.Inner": inner, "str": "text"}
    assert task.parts.ctx["Tenant"] is tenant
    # metadata is not data
    assert Tenant not in task.parts.data


def test_meta_same_class_last_wins(core: ModuleType) -> None:
    task = core.TaskBuilder("x").meta(Tenant("a")).meta(Tenant("b")).build()
    assert task.parts.ctx["Tenant"].name == "b"
    assert len(task.parts.ctx) == 1


def test_meta_goes_into_the_given_ctx(core: ModuleType) -> None:
    ctx = {"lease": 1}
    tenant = Tenant()
    task = core.TaskBuilder("x").with_ctx(ctx).meta(tenant).build()
    assert task.parts.ctx == {"lease": 1, "Tenant": tenant}
    # with_ctx is documented to take metadata added later
    assert ctx == {"lease": 1, "Tenant": tenant}


def test_meta_then_with_ctx_replaces_the_metadata(core: ModuleType) -> None:
    task = core.TaskBuilder("x").meta(Tenant()).with_ctx({"a": 1}).build()
    assert task.parts.ctx == {"a": 1}


def test_meta_needs_a_mapping_ctx(core: ModuleType) -> None:
    builder = core.TaskBuilder("x").with_ctx(object())
    with pytest.raises(
        TypeError,
        match=r"^meta: the task ctx must be a mutable mapping to hold metadata, got object$",
    ):
        builder.meta(Tenant())


@pytest.mark.parametrize("value", [0, 5, -5, 2**63 - 1, -(2**63)])
def test_priority(core: ModuleType, value: int) -> None:
    priority = core.TaskBuilder("x").priority(value).build().parts.priority
    assert priority == value
    assert type(priority) is int


@pytest.mark.parametrize(("given", "expected"), [(0, 0.0), (1_700_000_000, 1.7e9), (1.5, 1.5)])
def test_run_at_timestamp(core: ModuleType, given: float, expected: float) -> None:
    run_at = core.TaskBuilder("x").run_at_timestamp(given).build().parts.run_at
    assert run_at == expected
    assert type(run_at) is float


def test_run_at_time(core: ModuleType) -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=dt.UTC)
    assert core.TaskBuilder("x").run_at_time(when).build().parts.run_at == when.timestamp()
    assert when.timestamp() == 1893553445.6
    # the same instant written in another zone
    plus_two = when.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert core.TaskBuilder("x").run_at_time(plus_two).build().parts.run_at == 1893553445.6
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert core.TaskBuilder("x").run_at_time(epoch).build().parts.run_at == 0.0


@pytest.mark.parametrize(
    ("method", "amount", "offset"),
    [
        ("run_after", 0, 0),
        ("run_after", 90, 90),
        ("run_after", 2.5, 2.5),
        ("run_after", dt.timedelta(minutes=5), 300),
        ("run_in_seconds", 0, 0),
        ("run_in_seconds", 45, 45),
        ("run_in_seconds", dt.timedelta(seconds=3), 3),
        ("run_in_minutes", 10, 600),
        ("run_in_minutes", 1.5, 90),
        ("run_in_hours", 2, 7200),
        ("run_in_hours", 0.5, 1800),
    ],
)
def test_relative_schedule(core: ModuleType, method: str, amount: object, offset: float) -> None:
    builder = core.TaskBuilder("x")
    with wall_clock() as now:
        getattr(builder, method)(amount)
    # a scheduled time is fixed when the method is called, not at build()
    run_at = builder.build().parts.run_at
    assert_about(run_at, now, offset)
    assert builder.build().parts.run_at == run_at


def test_last_schedule_wins(core: ModuleType) -> None:
    builder = core.TaskBuilder("x").run_at_timestamp(5).run_in_hours(1)
    with wall_clock() as now:
        builder.run_in_seconds(10)
    assert_about(builder.build().parts.run_at, now, 10)
    assert builder.run_at_timestamp(7).build().parts.run_at == 7.0


def test_unscheduled_builder_uses_the_time_of_build(core: ModuleType) -> None:
    builder = core.TaskBuilder("x")
    with wall_clock() as now:
        task = builder.build()
    assert_about(task.parts.run_at, now, 0)


def test_builder_can_be_reused(core: ModuleType) -> None:
    builder = core.TaskBuilder(["args"]).id("same").data(Tenant()).meta(7).attempts(2)
    first, second = builder.build(), builder.build()
    assert first is not second
    assert first.parts is not second.parts
    assert first.args is second.args
    assert first.task_id == second.task_id == core.TaskId("same")
    # each task gets its own data map and its own metadata dict
    assert first.parts.data is not second.parts.data
    assert first.parts.data.get(Tenant) is second.parts.data.get(Tenant)
    first.parts.data.insert("s")
    assert str not in second.parts.data
    assert first.parts.ctx is not second.parts.ctx
    first.parts.ctx["extra"] = 1
    assert "extra" not in second.parts.ctx
    # a task built later sees later builder calls, earlier tasks do not
    third = builder.attempts(5).build()
    assert third.parts.max_attempts == 5
    assert first.parts.max_attempts == 2


# -- bad input -------------------------------------------------------------------


def _call(method: str, *args: object) -> Callable[[ModuleType], object]:
    return lambda m: getattr(m.TaskBuilder("x"), method)(*args)


SECS = "expected seconds as int, float or timedelta"
TS = "expected a UNIX timestamp in seconds (int or float)"
P64 = "must fit in 64 bits (-9223372036854775808 to 9223372036854775807)"
NAIVE = dt.datetime(2030, 1, 1, 12, 0)
UNKNOWN = "expected one of: Pending, Queued, Running, Done, Failed, Killed"


class NoOffset(dt.tzinfo):
    """A tzinfo whose utcoffset is None: such a datetime is still naive."""

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta | None:
        return None

    def __repr__(self) -> str:
        return "NoOffset()"


BAD: list[tuple[str, Callable[[ModuleType], object], type[Exception], str]] = [
    ("attempts zero", _call("attempts", 0), ValueError, "attempts: must be >= 1, got 0"),
    ("attempts negative", _call("attempts", -3), ValueError, "attempts: must be >= 1, got -3"),
    ("attempts too large", _call("attempts", 2**31), ValueError,
     "attempts: must be <= 2147483647, got 2147483648"),
    ("attempts float", _call("attempts", 3.0), TypeError, "attempts: expected int, got float 3.0"),
    ("attempts nan", _call("attempts", math.nan), TypeError,
     "attempts: expected int, got float nan"),
    ("attempts bool", _call("attempts", True), TypeError, "attempts: expected int, got bool True"),
    ("attempts str", _call("attempts", "3"), TypeError, "attempts: expected int, got str '3'"),
    ("attempts none", _call("attempts", None), TypeError,
     "attempts: expected int, got NoneType None"),
    ("timeout zero", _call("timeout", 0), ValueError,
     "timeout: duration must be > 0 seconds, got 0"),
    ("timeout negative", _call("timeout", -30), ValueError,
     "timeout: duration must be > 0 seconds, got -30"),
    ("timeout negative float", _call("timeout", -0.5), ValueError,
     "timeout: duration must be > 0 seconds, got -0.5"),
    ("timeout nan", _call("timeout", math.nan), ValueError,
     "timeout: duration must be a finite number of seconds, got nan"),
    ("timeout inf", _call("timeout", math.inf), ValueError,
     "timeout: duration must be a finite number of seconds, got inf"),
    ("timeout huge int", _call("timeout", 10**400), ValueError,
     f"timeout: duration must be a finite number of seconds, got {10**400}"),
    ("timeout zero timedelta", _call("timeout", dt.timedelta(0)), ValueError,
     "timeout: duration must be > 0 seconds, got datetime.timedelta(0)"),
    ("timeout negative timedelta", _call("timeout", dt.timedelta(seconds=-1)), ValueError,
     "timeout: duration must be > 0 seconds, got datetime.timedelta(days=-1, seconds=86399)"),
    ("timeout bool", _call("timeout", True), TypeError, f"timeout: {SECS}, got bool True"),
    ("timeout str", _call("timeout", "30"), TypeError, f"timeout: {SECS}, got str '30'"),
    ("timeout none", _call("timeout", None), TypeError, f"timeout: {SECS}, got NoneType None"),
    ("run_after negative", _call("run_after", -1), ValueError,
     "run_after: duration must be >= 0 seconds, got -1"),
    ("run_after nan", _call("run_after", math.nan), ValueError,
     "run_after: duration must be a finite number of seconds, got nan"),
    ("run_after negative timedelta", _call("run_after", dt.timedelta(hours=-1)), ValueError,
     "run_after: duration must be >= 0 seconds, got datetime.timedelta(days=-1, seconds=82800)"),
    ("run_after bool", _call("run_after", False), TypeError, f"run_after: {SECS}, got bool False"),
    ("run_in_seconds negative", _call("run_in_seconds", -0.1), ValueError,
     "run_in_seconds: duration must be >= 0 seconds, got -0.1"),
    ("run_in_seconds inf", _call("run_in_seconds", math.inf), ValueError,
     "run_in_seconds: duration must be a finite number of seconds, got inf"),
    ("run_in_seconds str", _call("run_in_seconds", "5"), TypeError,
     f"run_in_seconds: {SECS}, got str '5'"),
    ("run_in_minutes negative", _call("run_in_minutes", -10), ValueError,
     "run_in_minutes: duration must be >= 0 seconds, got -10"),
    ("run_in_minutes nan", _call("run_in_minutes", math.nan), ValueError,
     "run_in_minutes: duration must be a finite number of seconds, got nan"),
    ("run_in_minutes bool", _call("run_in_minutes", True), TypeError,
     f"run_in_minutes: {SECS}, got bool True"),
    ("run_in_minutes too large", _call("run_in_minutes", 1e307), ValueError,
     "run_in_minutes: delay is too large, got 1e+307"),
    ("run_in_hours negative", _call("run_in_hours", -1), ValueError,
     "run_in_hours: duration must be >= 0 seconds, got -1"),
    ("run_in_hours nan", _call("run_in_hours", math.nan), ValueError,
     "run_in_hours: duration must be a finite number of seconds, got nan"),
    ("run_in_hours none", _call("run_in_hours", None), TypeError,
     f"run_in_hours: {SECS}, got NoneType None"),
    ("run_in_hours too large", _call("run_in_hours", 1e306), ValueError,
     "run_in_hours: delay is too large, got 1e+306"),
    ("run_at_timestamp negative", _call("run_at_timestamp", -1), ValueError,
     "run_at_timestamp: timestamp must be a finite number >= 0, got -1"),
    ("run_at_timestamp nan", _call("run_at_timestamp", math.nan), ValueError,
     "run_at_timestamp: timestamp must be a finite number >= 0, got nan"),
    ("run_at_timestamp inf", _call("run_at_timestamp", math.inf), ValueError,
     "run_at_timestamp: timestamp must be a finite number >= 0, got inf"),
    ("run_at_timestamp bool", _call("run_at_timestamp", True), TypeError,
     f"run_at_timestamp: {TS}, got bool True"),
    ("run_at_timestamp str", _call("run_at_timestamp", "1700000000"), TypeError,
     f"run_at_timestamp: {TS}, got str '1700000000'"),
    ("run_at_timestamp timedelta", _call("run_at_timestamp", dt.timedelta(1)), TypeError,
     f"run_at_timestamp: {TS}, got timedelta datetime.timedelta(days=1)"),
    ("run_at_time naive", _call("run_at_time", NAIVE), ValueError,
     "run_at_time: datetime must be timezone-aware, got naive "
     "datetime.datetime(2030, 1, 1, 12, 0)"),
    ("run_at_time no offset", _call("run_at_time", NAIVE.replace(tzinfo=NoOffset())), ValueError,
     "run_at_time: datetime must be timezone-aware, got naive "
     "datetime.datetime(2030, 1, 1, 12, 0, tzinfo=NoOffset())"),
    ("run_at_time before epoch",
     _call("run_at_time", dt.datetime(1969, 12, 31, 23, 59, tzinfo=dt.UTC)), ValueError,
     "run_at_time: timestamp must be a finite number >= 0, got -60.0"),
    ("run_at_time date", _call("run_at_time", dt.date(2030, 1, 1)), TypeError,
     "run_at_time: expected datetime, got date datetime.date(2030, 1, 1)"),
    ("run_at_time timestamp", _call("run_at_time", 1.5), TypeError,
     "run_at_time: expected datetime, got float 1.5"),
    ("run_at_time str", _call("run_at_time", "2030-01-01T00:00Z"), TypeError,
     "run_at_time: expected datetime, got str '2030-01-01T00:00Z'"),
    ("priority float", _call("priority", 1.0), TypeError, "priority: expected int, got float 1.0"),
    ("priority bool", _call("priority", True), TypeError, "priority: expected int, got bool True"),
    ("priority str", _call("priority", "1"), TypeError, "priority: expected int, got str '1'"),
    ("priority too large", _call("priority", 2**63), ValueError, f"priority: {P64}, got {2**63}"),
    ("priority too small", _call("priority", -(2**63) - 1), ValueError,
     f"priority: {P64}, got {-(2**63) - 1}"),
    ("id int", _call("id", 5), TypeError, "id: expected str or TaskId, got int 5"),
    ("id none", _call("id", None), TypeError, "id: expected str or TaskId, got NoneType None"),
    ("id bytes", _call("id", b"x"), TypeError, "id: expected str or TaskId, got bytes b'x'"),
    ("id empty", _call("id", ""), ValueError, "TaskId: value must be a non-empty string"),
    ("with_task_id int", _call("with_task_id", 5), TypeError,
     "id: expected str or TaskId, got int 5"),
    ("with_attempt int", _call("with_attempt", 1), TypeError,
     "with_attempt: expected Attempt, got int 1"),
    ("with_attempt none", _call("with_attempt", None), TypeError,
     "with_attempt: expected Attempt, got NoneType None"),
    ("with_status unknown", _call("with_status", "Bogus"), ValueError,
     f"unknown Status 'Bogus'; {UNKNOWN}"),
    ("with_status lower case", _call("with_status", "done"), ValueError,
     f"unknown Status 'done'; {UNKNOWN}"),
    ("with_status int", _call("with_status", 3), TypeError,
     "with_status: expected Status, got int 3"),
    ("with_data dict", _call("with_data", {}), TypeError,
     "with_data: expected Extensions, got dict"),
    ("with_data none", _call("with_data", None), TypeError,
     "with_data: expected Extensions, got NoneType"),
]  # fmt: skip


test_bad_input, test_bad_input_same_on_both_cores = bad_input_tests(BAD)


def test_rejected_input_leaves_the_builder_unchanged(core: ModuleType) -> None:
    attempt = core.Attempt()
    builder = (
        core.TaskBuilder("x")
        .id("kept")
        .attempts(2)
        .timeout(5)
        .priority(3)
        .run_at_timestamp(100)
        .with_status(Status.Queued)
        .with_attempt(attempt)
        .data(1)
    )
    for method, value in [
        ("id", 1),
        ("attempts", 0),
        ("timeout", -1),
        ("priority", 1.5),
        ("run_at_timestamp", -1),
        ("run_after", math.nan),
        ("run_in_minutes", -1),
        ("run_at_time", NAIVE),
        ("with_status", "Bogus"),
        ("with_attempt", 0),
        ("with_data", {}),
    ]:
        with pytest.raises((TypeError, ValueError)):
            getattr(builder, method)(value)
    task = builder.build()
    assert task.task_id == core.TaskId("kept")
    assert task.parts.max_attempts == 2
    assert task.parts.timeout == 5.0
    assert task.parts.priority == 3
    assert task.parts.run_at == 100.0
    assert task.parts.status is Status.Queued
    assert task.parts.attempt is attempt
    assert task.parts.data.get(int) == 1


def test_core_objects_of_the_other_core_are_rejected(
    both_cores: tuple[ModuleType, ModuleType],
) -> None:
    compiled, python = both_cores
    for mine, theirs in [(compiled, python), (python, compiled)]:
        with pytest.raises(TypeError, match=r"^with_attempt: expected Attempt, got Attempt"):
            mine.TaskBuilder("x").with_attempt(theirs.Attempt())
        with pytest.raises(TypeError, match=r"^with_data: expected Extensions, got Extensions$"):
            mine.TaskBuilder("x").with_data(theirs.Extensions())
        with pytest.raises(TypeError, match=r"^id: expected str or TaskId, got TaskId"):
            mine.TaskBuilder("x").id(theirs.TaskId("a"))
