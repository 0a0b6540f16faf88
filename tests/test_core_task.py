"""Task and Parts: defaults, fields, clones and the validation of every field."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import OrderedDict
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


class Tenant:
    pass


def test_defaults(core: ModuleType) -> None:
    with wall_clock() as now:
        task = core.Task("work")
    parts = task.parts
    assert task.args == "work"
    assert type(parts) is core.Parts
    assert parts.task_id is None
    assert task.task_id is None
    assert type(parts.attempt) is core.Attempt
    assert parts.attempt.current() == 0
    assert parts.status is Status.Pending
    assert type(parts.run_at) is float
    assert now[0] - SLACK <= parts.run_at <= now[1] + SLACK
    assert type(parts.data) is core.Extensions
    assert len(parts.data) == 0
    assert parts.max_attempts is None
    assert parts.timeout is None
    assert parts.priority == 0
    assert parts.ctx is None


def test_seed_example(core: ModuleType) -> None:
    t = core.Task("work")
    t.parts.status = Status.Running
    assert t.parts.attempt.increment() == 0
    assert t.parts.status is Status.Running
    assert t.parts.attempt.current() == 1


def test_args_can_be_anything_and_are_kept_as_is(core: ModuleType) -> None:
    payload = {"to": "a@example.com", "tags": [1, 2]}
    task = core.Task(payload)
    assert task.args is payload
    assert core.Task(None).args is None
    task.args = 5
    assert task.args == 5
    assert core.Task(args="kw").args == "kw"


def test_ctx_is_kept(core: ModuleType) -> None:
    ctx = {"tenant": "acme"}
    assert core.Task("x", ctx).parts.ctx is ctx
    backend_ctx = object()
    assert core.Task("x", ctx=backend_ctx).parts.ctx is backend_ctx


def test_each_task_has_its_own_parts(core: ModuleType) -> None:
    first, second = core.Task("x"), core.Task("x")
    assert first.parts is not second.parts
    assert first.parts.data is not second.parts.data
    first.parts.data.insert(1)
    assert int not in second.parts.data


def test_parts_is_read_only(core: ModuleType) -> None:
    task = core.Task("x")
    parts = task.parts
    with pytest.raises(AttributeError):
        task.parts = core.Parts()
    assert task.parts is parts


def test_unknown_attributes_are_rejected(core: ModuleType) -> None:
    task = core.Task("x")
    for target in (task, task.parts, core.TaskBuilder("x")):
        with pytest.raises(AttributeError):
            target.no_such_field = 1
        assert not hasattr(target, "__dict__")


def test_parts_fields_are_settable(core: ModuleType) -> None:
    parts = core.Task("x").parts
    parts.status = Status.Queued
    parts.run_at = 1_700_000_000
    parts.max_attempts = 4
    parts.timeout = 2.5
    parts.priority = -3
    parts.ctx = {"k": "v"}
    assert parts.status is Status.Queued
    assert parts.run_at == 1_700_000_000.0
    assert type(parts.run_at) is float
    assert parts.max_attempts == 4
    assert parts.timeout == 2.5
    assert parts.priority == -3
    assert parts.ctx == {"k": "v"}
    parts.timeout = dt.timedelta(minutes=1)
    assert parts.timeout == 60.0
    parts.timeout = 7
    assert parts.timeout == 7.0
    assert type(parts.timeout) is float
    parts.max_attempts = None
    parts.timeout = None
    assert parts.max_attempts is None
    assert parts.timeout is None
    parts.run_at = 0
    assert parts.run_at == 0.0


def test_priority_extremes(core: ModuleType) -> None:
    parts = core.Task("x").parts
    for value in (2**63 - 1, -(2**63), 0):
        parts.priority = value
        assert parts.priority == value
        assert type(parts.priority) is int


def test_parts_constructor(core: ModuleType) -> None:
    attempt = core.Attempt(2)
    data = core.Extensions([1])
    parts = core.Parts(
        task_id="abc",
        data=data,
        attempt=attempt,
        ctx={"a": 1},
        status="Running",
        run_at=1234.5,
        max_attempts=5,
        timeout=dt.timedelta(seconds=3),
        priority=9,
    )
    assert parts.task_id == core.TaskId("abc")
    assert parts.data is data
    assert parts.attempt is attempt
    assert parts.ctx == {"a": 1}
    assert parts.status is Status.Running
    assert parts.run_at == 1234.5
    assert parts.max_attempts == 5
    assert parts.timeout == 3.0
    assert parts.priority == 9
    with wall_clock() as now:
        default = core.Parts()
    assert now[0] - SLACK <= default.run_at <= now[1] + SLACK
    assert default.task_id is None
    assert default.attempt.current() == 0
    assert default.max_attempts is None
    assert default.timeout is None
    assert default.priority == 0
    assert len(default.data) == 0


def test_parts_constructor_is_keyword_only(core: ModuleType) -> None:
    with pytest.raises(TypeError):
        core.Parts("abc")


def test_from_parts_uses_the_given_parts(core: ModuleType) -> None:
    parts = core.Parts(task_id="abc", priority=2)
    task = core.Task.from_parts({"n": 1}, parts)
    assert type(task) is core.Task
    assert task.parts is parts
    assert task.args == {"n": 1}
    assert task.task_id == core.TaskId("abc")


def test_repr(core: ModuleType) -> None:
    task = core.TaskBuilder("work").id("t-1").with_status(Status.Running).build()
    task.parts.attempt.increment()
    assert repr(task) == "Task('work', task_id=TaskId('t-1'), status=Running, attempt=1)"
    parts = core.Parts(task_id="t-1", run_at=5.0, max_attempts=3, timeout=1.5, priority=2)
    assert repr(parts) == (
        "Parts(task_id=TaskId('t-1'), status=Pending, attempt=0, run_at=5.0, "
        "max_attempts=3, timeout=1.5, priority=2)"
    )


# -- clone ---------------------------------------------------------------------


def _full_task(core: ModuleType) -> object:
    return (
        core.TaskBuilder(["args"])
        .id("task-1")
        .attempts(3)
        .timeout(10)
        .priority(4)
        .run_at_timestamp(1_800_000_000)
        .with_status(Status.Queued)
        .data(Tenant())
        .meta(Tenant())
        .build()
    )


def test_clone_copies_every_field(core: ModuleType) -> None:
    task = _full_task(core)
    clone = task.clone()
    assert type(clone) is core.Task
    assert clone is not task
    assert clone.parts is not task.parts
    assert clone.args is task.args
    for field in ("task_id", "status", "run_at", "max_attempts", "timeout", "priority"):
        assert getattr(clone.parts, field) == getattr(task.parts, field), field
    assert clone.parts.ctx == task.parts.ctx
    assert clone.parts.data == task.parts.data


def test_clone_shares_the_attempt(core: ModuleType) -> None:
    task = _full_task(core)
    clone = task.clone()
    assert clone.parts.attempt is task.parts.attempt
    clone.parts.attempt.increment()
    assert task.parts.attempt.current() == 1
    task.parts.attempt.increment()
    assert clone.parts.attempt.current() == 2


def test_clone_copies_data_shallowly(core: ModuleType) -> None:
    task = _full_task(core)
    tenant = task.parts.data.get(Tenant)
    clone = task.clone()
    assert clone.parts.data is not task.parts.data
    assert clone.parts.data.get(Tenant) is tenant  # the same value object
    clone.parts.data.insert(42)
    clone.parts.data.remove(Tenant)
    assert int not in task.parts.data
    assert task.parts.data.get(Tenant) is tenant
    task.parts.data.insert("s")
    assert str not in clone.parts.data


def test_clone_of_a_task_without_data(core: ModuleType) -> None:
    task = core.Task("x")
    clone = task.clone()
    clone.parts.data.insert(1)
    assert len(task.parts.data) == 0


def test_clone_fields_are_independent(core: ModuleType) -> None:
    task = _full_task(core)
    clone = task.clone()
    clone.parts.status = Status.Done
    clone.parts.priority = 99
    clone.parts.timeout = None
    clone.parts.task_id = "other"
    clone.args = "changed"
    assert task.parts.status is Status.Queued
    assert task.parts.priority == 4
    assert task.parts.timeout == 10.0
    assert task.parts.task_id == core.TaskId("task-1")
    assert task.args == ["args"]


def test_clone_copies_a_dict_ctx_and_shares_other_contexts(core: ModuleType) -> None:
    task = core.Task("x", {"a": 1})
    clone = task.clone()
    assert clone.parts.ctx == {"a": 1}
    assert clone.parts.ctx is not task.parts.ctx
    clone.parts.ctx["b"] = 2
    assert task.parts.ctx == {"a": 1}
    backend_ctx = OrderedDict(a=1)  # not a plain dict: a backend's object, shared
    assert core.Task("x", backend_ctx).clone().parts.ctx is backend_ctx
    assert core.Task("x").clone().parts.ctx is None


def test_parts_copy_matches_clone(core: ModuleType) -> None:
    task = _full_task(core)
    copied = task.parts.copy()
    assert type(copied) is core.Parts
    assert copied is not task.parts
    assert copied.attempt is task.parts.attempt
    assert copied.data is not task.parts.data
    assert copied.data == task.parts.data
    assert copied.ctx == task.parts.ctx
    assert copied.ctx is not task.parts.ctx
    assert repr(copied) == repr(task.parts)


# -- metadata --------------------------------------------------------------------


def test_metadata_is_keyed_by_qualname(core: ModuleType) -> None:
    tenant = Tenant()
    task = core.TaskBuilder("x").meta(tenant).meta(7).build()
    assert task.parts.ctx == {"Tenant": tenant, "int": 7}
    assert task.parts.ctx["Tenant"] is tenant


# -- bad input -------------------------------------------------------------------


def _set(field: str, value: object) -> Callable[[ModuleType], object]:
    return lambda m: setattr(m.Task("x").parts, field, value)


def _parts(**fields: object) -> Callable[[ModuleType], object]:
    return lambda m: m.Parts(**fields)


TS = "expected a UNIX timestamp in seconds (int or float)"
SECS = "expected seconds as int, float or timedelta"
P64 = "must fit in 64 bits (-9223372036854775808 to 9223372036854775807)"

BAD: list[tuple[str, Callable[[ModuleType], object], type[Exception], str]] = [
    ("run_at negative", _set("run_at", -1), ValueError,
     "run_at: timestamp must be a finite number >= 0, got -1"),
    ("run_at nan", _set("run_at", math.nan), ValueError,
     "run_at: timestamp must be a finite number >= 0, got nan"),
    ("run_at inf", _set("run_at", math.inf), ValueError,
     "run_at: timestamp must be a finite number >= 0, got inf"),
    ("run_at huge int", _set("run_at", 10**400), ValueError,
     f"run_at: timestamp must be a finite number >= 0, got {10**400}"),
    ("run_at str", _set("run_at", "now"), TypeError, f"run_at: {TS}, got str 'now'"),
    ("run_at bool", _set("run_at", True), TypeError, f"run_at: {TS}, got bool True"),
    ("run_at none", _set("run_at", None), TypeError, f"run_at: {TS}, got NoneType None"),
    ("run_at datetime", _set("run_at", dt.datetime(2030, 1, 1, tzinfo=dt.UTC)), TypeError,
     f"run_at: {TS}, got datetime "
     "datetime.datetime(2030, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)"),
    ("timeout zero", _set("timeout", 0), ValueError,
     "timeout: duration must be > 0 seconds, got 0"),
    ("timeout negative", _set("timeout", -1.5), ValueError,
     "timeout: duration must be > 0 seconds, got -1.5"),
    ("timeout nan", _set("timeout", math.nan), ValueError,
     "timeout: duration must be a finite number of seconds, got nan"),
    ("timeout -inf", _set("timeout", -math.inf), ValueError,
     "timeout: duration must be a finite number of seconds, got -inf"),
    ("timeout negative timedelta", _set("timeout", dt.timedelta(seconds=-1)), ValueError,
     "timeout: duration must be > 0 seconds, got datetime.timedelta(days=-1, seconds=86399)"),
    ("timeout bool", _set("timeout", True), TypeError, f"timeout: {SECS}, got bool True"),
    ("timeout str", _set("timeout", "30"), TypeError, f"timeout: {SECS}, got str '30'"),
    ("max_attempts zero", _set("max_attempts", 0), ValueError,
     "max_attempts: must be >= 1, got 0"),
    ("max_attempts negative", _set("max_attempts", -2), ValueError,
     "max_attempts: must be >= 1, got -2"),
    ("max_attempts too large", _set("max_attempts", 2**31), ValueError,
     "max_attempts: must be <= 2147483647, got 2147483648"),
    ("max_attempts float", _set("max_attempts", 3.0), TypeError,
     "max_attempts: expected int, got float 3.0"),
    ("max_attempts bool", _set("max_attempts", True), TypeError,
     "max_attempts: expected int, got bool True"),
    ("priority str", _set("priority", "high"), TypeError,
     "priority: expected int, got str 'high'"),
    ("priority bool", _set("priority", True), TypeError,
     "priority: expected int, got bool True"),
    ("priority float", _set("priority", 1.0), TypeError,
     "priority: expected int, got float 1.0"),
    ("priority none", _set("priority", None), TypeError,
     "priority: expected int, got NoneType None"),
    ("priority too large", _set("priority", 2**63), ValueError, f"priority: {P64}, got {2**63}"),
    ("priority too small", _set("priority", -(2**63) - 1), ValueError,
     f"priority: {P64}, got {-(2**63) - 1}"),
    ("task_id int", _set("task_id", 5), TypeError,
     "task_id: expected TaskId or str, got int 5"),
    ("status unknown", _set("status", "Finished"), ValueError,
     "unknown Status 'Finished'; expected one of: Pending, Queued, Running, Done, Failed, Killed"),
    ("status int", _set("status", 1), TypeError, "status: expected Status, got int 1"),
    ("data dict", _set("data", {}), TypeError, "data: expected Extensions, got dict"),
    ("attempt int", _set("attempt", 0), TypeError, "attempt: expected Attempt, got int"),
    ("Parts run_at", _parts(run_at=-5.0), ValueError,
     "run_at: timestamp must be a finite number >= 0, got -5.0"),
    ("Parts timeout", _parts(timeout=math.nan), ValueError,
     "timeout: duration must be a finite number of seconds, got nan"),
    ("Parts max_attempts", _parts(max_attempts=0), ValueError,
     "max_attempts: must be >= 1, got 0"),
    ("Parts priority bool", _parts(priority=False), TypeError,
     "priority: expected int, got bool False"),
    ("Parts priority huge", _parts(priority=2**64), ValueError, f"priority: {P64}, got {2**64}"),
    ("Parts status", _parts(status="pending"), ValueError,
     "unknown Status 'pending'; expected one of: Pending, Queued, Running, Done, Failed, Killed"),
    ("Parts task_id", _parts(task_id=b"x"), TypeError,
     "task_id: expected TaskId or str, got bytes b'x'"),
    ("from_parts none", lambda m: m.Task.from_parts("x", None), TypeError,
     "from_parts: expected Parts, got NoneType"),
    ("from_parts dict", lambda m: m.Task.from_parts("x", {}), TypeError,
     "from_parts: expected Parts, got dict"),
]  # fmt: skip


test_bad_input, test_bad_input_same_on_both_cores = bad_input_tests(BAD)


def test_rejected_value_leaves_the_field_unchanged(core: ModuleType) -> None:
    parts = core.Parts(run_at=10.0, timeout=5, max_attempts=2, priority=1, status="Queued")
    for field, value in [
        ("run_at", -1),
        ("timeout", 0),
        ("max_attempts", 0),
        ("priority", "x"),
        ("status", "x"),
        ("task_id", 1),
        ("data", 1),
        ("attempt", 1),
    ]:
        with pytest.raises((TypeError, ValueError)):
            setattr(parts, field, value)
    assert parts.run_at == 10.0
    assert parts.timeout == 5.0
    assert parts.max_attempts == 2
    assert parts.priority == 1
    assert parts.status is Status.Queued
    assert parts.task_id is None
    assert len(parts.data) == 0
    assert parts.attempt.current() == 0


def test_parts_of_the_other_core_are_rejected(both_cores: tuple[ModuleType, ModuleType]) -> None:
    compiled, python = both_cores
    with pytest.raises(TypeError, match=r"^from_parts: expected Parts, got Parts$"):
        compiled.Task.from_parts("x", python.Parts())
    with pytest.raises(TypeError, match=r"^from_parts: expected Parts, got Parts$"):
        python.Task.from_parts("x", compiled.Parts())
