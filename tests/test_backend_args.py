"""The backend kit's argument checks: one exception type and message per bad value."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable

import pytest

from pyapalis import Status, Task, TaskId
from pyapalis.backends._kit import _args

ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


@pytest.mark.parametrize(
    ("check", "value", "expected"),
    [
        (_args.check_task_id, ID, TaskId(ID)),
        (_args.check_task_id, TaskId(ID), TaskId(ID)),
        (_args.check_task_ids, (ID, TaskId(ID)), [TaskId(ID), TaskId(ID)]),
        (_args.check_task_ids, iter([]), []),
        (_args.check_status_filter, None, None),
        (_args.check_status_filter, "Done", Status.Done),
        (_args.check_status_filter, Status.Pending, Status.Pending),
        (_args.check_final_status, Status.Killed, Status.Killed),
        (_args.check_page, 3, 3),
        (_args.check_limit, None, None),
        (_args.check_limit, 1, 1),
        (_args.check_count, 0, 0),
        (_args.check_priority, _args.INT64_MIN, _args.INT64_MIN),
        (_args.check_name, "emails", "emails"),
        (_args.check_delay, 0, 0.0),
        (_args.check_delay, 2.5, 2.5),
        (_args.check_delay, datetime.timedelta(minutes=1), 60.0),
        (_args.check_run_at, 1_700_000_000, 1_700_000_000.0),
    ],
)
def test_good_values_come_back_normalized(
    check: Callable[[object, str], object], value: object, expected: object
) -> None:
    result = check(value, "f: x")
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("check", "value", "error", "message"),
    [
        (
            _args.check_task_id,
            b"x",
            TypeError,
            "must be a TaskId or a non-empty str, got bytes b'x'",
        ),
        (_args.check_task_id, "", ValueError, "must be a TaskId or a non-empty str, got str ''"),
        (_args.check_task_ids, ID, TypeError, f"must be an iterable of task ids, got str '{ID}'"),
        (
            _args.check_task_ids,
            TaskId(ID),
            TypeError,
            "must be an iterable of task ids, got TaskId",
        ),
        (
            _args.check_task_ids,
            b"ab",
            TypeError,
            "must be an iterable of task ids, got bytes b'ab'",
        ),
        (_args.check_task, None, TypeError, "must be a Task, got NoneType None"),
        (_args.check_status_filter, "done", ValueError, "must be a Status, a Status name or None"),
        (_args.check_final_status, "Done", TypeError, "must be Status.Done, Status.Failed or"),
        (_args.check_final_status, Status.Running, ValueError, "must be Status.Done, Status.Fa"),
        (_args.check_page, 0, ValueError, "must be an int >= 1, got int 0"),
        (_args.check_page, 1.0, TypeError, "must be an int >= 1, got float 1.0"),
        (_args.check_limit, 0, ValueError, "must be an int >= 1 or None, got int 0"),
        (_args.check_limit, False, TypeError, "must be an int >= 1 or None, got bool False"),
        (_args.check_count, -1, ValueError, "must be an int >= 0, got int -1"),
        (_args.check_priority, 2**63, ValueError, "must be an int from -9223372036854775808 to"),
        (_args.check_priority, "1", TypeError, "must be an int from -9223372036854775808 to"),
        (_args.check_name, "", ValueError, "must be a non-empty str, got str ''"),
        (_args.check_name, None, TypeError, "must be a non-empty str, got NoneType None"),
        (_args.check_delay, -0.5, ValueError, "must be a finite number of seconds >= 0 or a"),
        (_args.check_delay, math.inf, ValueError, "or a timedelta, got float inf"),
        (_args.check_delay, 10**400, ValueError, "or a timedelta, got int 1000000000"),
        (_args.check_delay, datetime.timedelta(-1), ValueError, "got timedelta datetime.timedel"),
        (_args.check_delay, False, TypeError, "or a timedelta, got bool False"),
        (_args.check_run_at, -1, ValueError, "must be a finite UNIX timestamp >= 0 in seconds"),
        (_args.check_run_at, math.nan, ValueError, "in seconds, got float nan"),
        (_args.check_run_at, "now", TypeError, "in seconds, got str 'now'"),
    ],
)
def test_bad_values_raise_one_type_and_message(
    check: Callable[[object, str], object], value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        check(value, "f: x")
    assert type(raised.value) is error
    text = str(raised.value)
    assert text.startswith("f: x must be ")
    assert message in text


def test_a_bad_item_is_named_as_an_item() -> None:
    with pytest.raises(ValueError, match=r"^check: ids item must be a TaskId or a non-empty str"):
        _args.check_task_ids([ID, ""], "check: ids")


def test_a_long_value_is_cut_short() -> None:
    with pytest.raises(TypeError) as raised:
        _args.check_name(["x" * 500], "f: name")
    shown = str(raised.value).split(", got ", 1)[1]
    assert shown.startswith("list ['xxx") and shown.endswith("...")
    assert len(shown) < 70


def test_the_same_task_class_as_the_core_in_use() -> None:
    task = Task("x")
    assert _args.check_task(task, "f: task") is task
