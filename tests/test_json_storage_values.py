"""JsonStorage: stored values a task cannot have (issue 12, point 2).

A record with the right types but an impossible value (``max_attempts`` 0, a
negative timeout, run_at or attempt count, a priority beyond 64 bits) is
reported at open with its file and line, the file untouched, like any damaged
line. And should such a value reach a worker anyway, the task is failed with a
clear error: the worker lives on and the tasks behind it run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from pyapalis._errors import StorageError
from pyapalis._status import Status
from pyapalis._worker._context import WorkerContext
from pyapalis._worker._events import Event, EventKind
from pyapalis._worker._worker import WorkerBuilder
from pyapalis.backends._json._journal import HEADER
from pyapalis.backends._json._storage import JsonStorage

HEADER_LINE = orjson.dumps(HEADER) + b"\n"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.jsonl"


def push(task_id: str, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"op": "push", "id": task_id, "queue": "default", "args": "1"}
    record["run_at"] = time.time() - 1
    record.update(fields)
    return record


def take(task_id: str, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"op": "take", "id": task_id, "attempts": 1}
    record.update(lease=time.time() + 30, owner="dead", **fields)
    return record


def update(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"op": "update", "id": "a", "status": "Pending", "attempts": 0}
    record.update(run_at=1.0, max=None, timeout=None, priority=0, meta=None)
    record.update(fields)
    return record


LINE = r"line 3 is not a valid record \((Value|Type)Error: "


@pytest.mark.parametrize(
    ("record", "message"),
    [
        pytest.param(push("x", max=0), r"'max' \(max_attempts\) must be from 1 to", id="max-0"),
        pytest.param(push("x", max=2**31), r"'max' .* got 2147483648", id="max-big"),
        pytest.param(push("x", timeout=-1.5), r"'timeout' must be > 0 seconds", id="timeout"),
        pytest.param(push("x", timeout=0), r"'timeout' must be > 0 seconds", id="timeout-0"),
        pytest.param(push("x", run_at=-5), r"'run_at' must be a UNIX timestamp >= 0", id="run_at"),
        pytest.param(push("x", attempts=-1), r"'attempts' \(the attempt count\)", id="attempts"),
        pytest.param(push("x", priority=2**63), r"'priority' \(a 64-bit priority\)", id="prio"),
        pytest.param(
            push("x", priority=2**64 - 1), r"'priority' .* got 18446744073709551615", id="prio-u64"
        ),
        pytest.param(
            push("x", priority=-(2**63) - 1),
            r"'priority' must be int, got -9.2",  # orjson reads it as a float
            id="prio-low",
        ),
        pytest.param(push("x", status="Queued"), r"status 'Queued' is not possible", id="queued"),
        pytest.param(push("x", id=""), r"'id' must not be empty", id="empty-id"),
        pytest.param(take("a", attempts=-2), r"'attempts'", id="take-attempts"),
        pytest.param(
            {"op": "final", "id": "a", "status": "Pending", "attempts": 1},
            r"status 'Pending' is not possible here \(expected Done, Failed, Killed\)",
            id="final-pending",
        ),
        pytest.param(
            {"op": "retry", "id": "a", "attempts": 1, "run_at": -1.0},
            r"'run_at' must be a UNIX timestamp >= 0",
            id="retry-run_at",
        ),
        pytest.param(update(max=0), r"'max'", id="update-max"),
        pytest.param(update(timeout=-3), r"'timeout'", id="update-timeout"),
        pytest.param(update(priority=2**63), r"'priority'", id="update-priority"),
        pytest.param(update(status="Running"), r"status 'Running'", id="update-running"),
    ],
)
def test_an_impossible_value_is_reported_with_its_line(
    path: Path, record: dict[str, Any], message: str
) -> None:
    # The json module writes any int (orjson refuses those beyond 64 bits).
    content = b"".join(json.dumps(r).encode() + b"\n" for r in (push("a"), record, push("b")))
    path.write_bytes(HEADER_LINE + content)
    before = path.read_bytes()
    with pytest.raises(StorageError, match=LINE + message) as raised:
        JsonStorage(path)
    assert str(raised.value).startswith(f"JsonStorage: {path}: line 3 is not a valid record")
    assert path.read_bytes() == before, "the file is left as it was"


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b'{"op":"push","id":"x","queue":"default","args":"1","run_at":NaN}', id="nan"),
        pytest.param(
            b'{"op":"push","id":"x","queue":"default","args":"1","run_at":1,"timeout":1e999}',
            id="infinity",
        ),
    ],
)
def test_nan_and_infinity_are_damaged_lines(path: Path, line: bytes) -> None:
    path.write_bytes(HEADER_LINE + orjson.dumps(push("a")) + b"\n" + line + b"\n")
    before = path.read_bytes()
    with pytest.raises(StorageError, match=rf"{path}: line 3 is corrupt"):
        JsonStorage(path)
    assert path.read_bytes() == before


def test_numbers_are_checked_to_be_finite() -> None:
    """Records built in memory (not parsed) get the same check."""
    from pyapalis.backends._json._store import Entry

    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="must be a finite number"):
            Entry(push("x", run_at=bad))
        with pytest.raises(ValueError, match="must be a finite number"):
            Entry(push("x", timeout=bad))
    with pytest.raises(ValueError, match="must be a finite number"):
        Entry(push("x", run_at=10**400))


def test_the_extreme_possible_values_are_accepted(path: Path) -> None:
    path.write_bytes(
        HEADER_LINE
        + orjson.dumps(push("a", max=2**31 - 1, timeout=1e-9, priority=2**63 - 1, attempts=0))
        + b"\n"
        + orjson.dumps(push("b", max=1, priority=-(2**63), run_at=0))
        + b"\n"
    )
    with JsonStorage(path) as storage:
        assert len(storage) == 2


# -- the second defence: a worker meets a task that cannot become a Task ------------------------


async def test_a_task_that_cannot_become_a_task_fails_and_the_queue_goes_on(
    path: Path, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    with JsonStorage(path) as storage:
        broken, behind = await storage.push_bulk(["broken", "behind"])
        # A value that slipped past the checks at open (say, a rule of Task
        # that replay does not know): the store holds what no Task accepts.
        storage._store.entries[str(broken)].max_attempts = 0
        ran: list[str] = []
        ended = 0

        async def handler(item: str) -> str:
            ran.append(item)
            return item.upper()

        def on_event(ctx: WorkerContext, event: Event) -> None:
            nonlocal ended
            if event.kind in (EventKind.Success, EventKind.Error):
                ended += 1
                ctx.stop()

        worker = WorkerBuilder("w").backend(storage).on_event(on_event).build(handler)
        with caplog.at_level(logging.ERROR, "pyapalis.json_storage"), trio.fail_after(60):
            await worker.run()  # it does not die on the broken task
        assert ran == ["behind"]
        failed, done = await storage.check_status([broken, behind])
        assert failed.status is Status.Failed
        assert str(failed.result.error) == (
            "StorageError: the stored task is not a valid task: "
            "ValueError: max_attempts: must be >= 1, got 0"
        )
        assert done.status is Status.Done and done.unwrap() == "BEHIND"
        assert any("task " + str(broken) + " failed" in r.getMessage() for r in caplog.records)
        # The impossible value is reset, so a compaction writes a valid file.
        assert await storage.vacuum() == 2
        await storage.push("later")
    with JsonStorage(path) as reopened:
        assert len(reopened) == 1


async def test_fetching_a_task_that_cannot_become_a_task_names_it(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with JsonStorage(path) as storage:
        task_id = await storage.push("x")
        storage._store.entries[str(task_id)].timeout = -1.0
        with pytest.raises(StorageError, match=rf"task {task_id} is not a valid task: ValueError"):
            await storage.fetch_by_id(task_id)
