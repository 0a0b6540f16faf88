"""BackgroundTask definitions, TaskHash, enqueueing and uniqueness.

The worker side (WorkerPool: dispatch, retries, app data) is in
tests/test_worker_pool.py. Time-dependent tests run in virtual time.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
import trio
import trio.testing

from pyapalis import (
    AbortError,
    BackoffMode,
    CodecError,
    MemoryStorage,
    Status,
    Task,
    TaskId,
)
from pyapalis.backends._json._storage import JsonStorage
from pyapalis.backends._memory._queues import MemoryQueues
from pyapalis.typed._pool import RetentionMode, WorkerPool
from pyapalis.typed._task import BackgroundTask, CurrentTask, TaskHash, encode_envelope
from pyapalis.typed._unique import INFO_KEY

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Greet(BackgroundTask):
    TASK_NAME = "greet"

    name: str
    times: int = 1

    async def run(self, task: CurrentTask, app: Any) -> str:
        return f"hello {self.name}" * self.times


class Report(BackgroundTask):
    """A unique task: one report per day may be pending at a time."""

    TASK_NAME = "report"
    MAX_RETRIES = 0
    BACKOFF_MODE = BackoffMode.NoBackoff

    day: str
    fail: bool = False
    abort: bool = False

    async def run(self, task: CurrentTask, app: Any) -> str:
        if self.abort:
            raise AbortError("aborted")
        if self.fail:
            raise RuntimeError("report failed")
        return self.day

    def uniq(self) -> TaskHash | None:
        return TaskHash.of(self.day)


class Email(BackgroundTask):
    TASK_NAME = "email"
    QUEUE = "emails"

    to: str

    async def run(self, task: CurrentTask, app: Any) -> None:
        return None


def stored(storage: MemoryStorage) -> list[Task]:
    """Take every ready task out of a MemoryStorage (to inspect what was pushed)."""
    tasks = []
    while (task := storage.take_nowait()) is not None:
        tasks.append(task)
    return tasks


# -- definitions -------------------------------------------------------------------


def test_subclass_is_a_dataclass_with_the_defaults_of_backie() -> None:
    assert dataclasses.is_dataclass(Greet)
    assert [field.name for field in dataclasses.fields(Greet)] == ["name", "times"]
    assert Greet("ann") == Greet(name="ann", times=1)
    assert repr(Greet("ann", 2)) == "Greet(name='ann', times=2)"
    assert Greet.QUEUE == "default"
    assert Greet.MAX_RETRIES == 3
    assert Greet.BACKOFF_MODE is BackoffMode.ExponentialBackoff
    assert Greet("x").uniq() is None


def test_dataclass_options_are_class_keywords() -> None:
    class Frozen(BackgroundTask, frozen=True, kw_only=True):
        TASK_NAME = "frozen"
        value: int

        async def run(self, task: CurrentTask, app: Any) -> None:
            return None

    task = Frozen(value=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.value = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Frozen(1)  # type: ignore[misc]


def test_abstract_base_shares_fields_and_a_concrete_subclass_names_itself() -> None:
    class Base(BackgroundTask, abstract=True):
        QUEUE = "shared"
        tenant: str

    class Concrete(Base):
        TASK_NAME = "concrete"
        item: int

        async def run(self, task: CurrentTask, app: Any) -> str:
            return f"{self.tenant}/{self.item}"

    assert Base.ABSTRACT and not Concrete.ABSTRACT
    assert Concrete("acme", 3).to_payload() == {"tenant": "acme", "item": 3}
    assert Concrete.QUEUE == "shared"


async def test_an_abstract_task_cannot_be_enqueued() -> None:
    class Base(BackgroundTask, abstract=True):
        pass

    with pytest.raises(
        TypeError, match=r"^\S*Base.enqueue: \S*Base is abstract \(it has no TASK_NAME\)$"
    ):
        await Base().enqueue(MemoryStorage())


def _define(body: dict[str, Any], **keywords: Any) -> type:
    namespace: dict[str, Any] = {"__module__": __name__, "__qualname__": "Bad"}
    namespace.update(body)
    return type("Bad", (BackgroundTask,), namespace, **keywords)


async def _run(self: Any, task: CurrentTask, app: Any) -> None:
    return None


def _sync_run(self: Any, task: CurrentTask, app: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("body", "keywords", "message"),
    [
        pytest.param(
            {"run": _run},
            {},
            "Bad: a BackgroundTask must define its own TASK_NAME "
            "(or be declared with abstract=True)",
            id="no-task-name",
        ),
        pytest.param(
            {"TASK_NAME": "", "run": _run},
            {},
            "Bad: TASK_NAME must be a non-empty str, got ''",
            id="empty-task-name",
        ),
        pytest.param(
            {"TASK_NAME": 7, "run": _run},
            {},
            "Bad: TASK_NAME must be a non-empty str, got 7",
            id="task-name-not-str",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "QUEUE": "", "run": _run},
            {},
            "Bad: QUEUE must be a non-empty str, got ''",
            id="empty-queue",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "MAX_RETRIES": -1, "run": _run},
            {},
            "Bad: MAX_RETRIES must be an int >= 0, got -1",
            id="negative-retries",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "MAX_RETRIES": True, "run": _run},
            {},
            "Bad: MAX_RETRIES must be an int >= 0, got True",
            id="bool-retries",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "BACKOFF_MODE": 2.0, "run": _run},
            {},
            "Bad: BACKOFF_MODE must be a BackoffMode, got float",
            id="backoff-not-mode",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "TIMEOUT": 0, "run": _run},
            {},
            "Bad: TIMEOUT must be None or a time limit > 0 (seconds as int or float, "
            "or a timedelta), got 0",
            id="timeout-zero",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "TIMEOUT": -1.5, "run": _run},
            {},
            "Bad: TIMEOUT must be None or a time limit > 0 (seconds as int or float, "
            "or a timedelta), got -1.5",
            id="timeout-negative",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "TIMEOUT": math.nan, "run": _run},
            {},
            "Bad: TIMEOUT must be None or a time limit > 0 (seconds as int or float, "
            "or a timedelta), got nan",
            id="timeout-nan",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "TIMEOUT": "30", "run": _run},
            {},
            "Bad: TIMEOUT must be None or a time limit > 0 (seconds as int or float, "
            "or a timedelta), got '30'",
            id="timeout-str",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "TIMEOUT": True, "run": _run},
            {},
            "Bad: TIMEOUT must be None or a time limit > 0 (seconds as int or float, "
            "or a timedelta), got True",
            id="timeout-bool",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "TIMEOUT": datetime.timedelta(0), "run": _run},
            {},
            "Bad: TIMEOUT must be None or a time limit > 0 (seconds as int or float, "
            "or a timedelta), got datetime.timedelta(0)",
            id="timeout-zero-timedelta",
        ),
        pytest.param(
            {"TASK_NAME": "bad"},
            {},
            "Bad: a BackgroundTask must define async def run(self, task, app)",
            id="no-run",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "run": _sync_run},
            {},
            "Bad: run must be an async def (a coroutine function)",
            id="sync-run",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "run": _run, "__annotations__": {"TASK_NAME": str}},
            {},
            "Bad: TASK_NAME must be class attributes, not payload fields "
            "(leave them unannotated or annotate them with ClassVar)",
            id="task-name-as-field",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "run": _run, "__annotations__": {"TIMEOUT": float}},
            {},
            "Bad: TIMEOUT must be class attributes, not payload fields "
            "(leave them unannotated or annotate them with ClassVar)",
            id="timeout-as-field",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "run": _run},
            {"slots": True},
            "Bad: unsupported class keyword(s) slots (BackgroundTask accepts abstract and "
            "the dataclass options eq, frozen, kw_only, match_args, order, repr)",
            id="slots-keyword",
        ),
        pytest.param(
            {"TASK_NAME": "bad", "run": _run},
            {"abstract": "yes"},
            "Bad: abstract must be a bool, got 'yes'",
            id="abstract-not-bool",
        ),
    ],
)
def test_bad_definitions_raise_type_error_at_definition(
    body: dict[str, Any], keywords: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match="^" + re.escape(message) + "$"):
        _define(body, **keywords)


def test_a_subclass_must_not_inherit_its_parents_task_name() -> None:
    with pytest.raises(
        TypeError, match=r"^\S*Child: a BackgroundTask must define its own TASK_NAME"
    ):

        class Child(Greet):
            pass


def test_timeout_is_validated_at_definition_and_inherited() -> None:
    from pyapalis.typed._task import execution_timeout

    class Limited(BackgroundTask, abstract=True):
        TIMEOUT = 30

    class Child(Limited):
        TASK_NAME = "limited-child"

        async def run(self, task: CurrentTask, app: Any) -> None:
            return None

    class Spelled(BackgroundTask):
        TASK_NAME = "spelled"
        TIMEOUT = datetime.timedelta(minutes=2)

        async def run(self, task: CurrentTask, app: Any) -> None:
            return None

    assert [execution_timeout(cls) for cls in (Greet, Child, Spelled)] == [None, 30.0, 120.0]
    assert dataclasses.fields(Child) == ()  # type: ignore[arg-type]


def test_class_var_annotation_is_not_a_field() -> None:
    class Annotated(BackgroundTask):
        TASK_NAME: ClassVar[str] = "annotated"
        value: int

        async def run(self, task: CurrentTask, app: Any) -> None:
            return None

    assert [field.name for field in dataclasses.fields(Annotated)] == ["value"]


# -- TaskHash and CurrentTask ----------------------------------------------------------


def test_task_hash_of_is_canonical_sha256() -> None:
    expected = __import__("hashlib").sha256(b'[{"a":1,"b":2},"x"]').hexdigest()
    assert TaskHash.of({"b": 2, "a": 1}, "x") == TaskHash(expected)
    assert TaskHash.of({"a": 1, "b": 2}, "x").value == expected
    assert TaskHash.of("x") != TaskHash.of("y")
    assert str(TaskHash("day-1")) == "day-1"


def test_default_hash_covers_name_and_payload() -> None:
    assert TaskHash.default_for_task(Greet("ann")) == TaskHash.default_for_task(Greet("ann"))
    assert TaskHash.default_for_task(Greet("ann")) != TaskHash.default_for_task(Greet("bob"))
    assert TaskHash.default_for_task(Greet("ann")) == TaskHash.of(
        "greet", {"name": "ann", "times": 1}
    )
    assert TaskHash.default_for_task(Report("ann")) != TaskHash.default_for_task(Greet("ann"))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: TaskHash(""), ValueError, "TaskHash: value must be a non-empty str, got ''"),
        (lambda: TaskHash(5), ValueError, "TaskHash: value must be a non-empty str, got 5"),
        (
            lambda: TaskHash.of({1, 2}),
            TypeError,
            "TaskHash.of: values must be JSON-encodable: Type is not JSON serializable: set",
        ),
        (
            lambda: TaskHash.default_for_task("ann"),
            TypeError,
            "TaskHash.default_for_task: expected a BackgroundTask, got str",
        ),
    ],
)
def test_task_hash_bad_input(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        call()


def test_current_task_retries_counts_earlier_executions() -> None:
    created = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    current = CurrentTask(TaskId("t"), "greet", 3, 4, created, "default")
    assert current.retries == 2
    assert current.created_at is created


# -- enqueueing ---------------------------------------------------------------------


async def test_enqueue_stores_the_envelope_retry_budget_and_creation_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    before = datetime.datetime.now(datetime.UTC).timestamp()
    task_id = await Greet("ann", 2).enqueue(storage)
    after = datetime.datetime.now(datetime.UTC).timestamp()
    (task,) = stored(storage)
    assert isinstance(task_id, TaskId)
    assert task.parts.task_id == task_id
    assert task.args == {"task_name": "greet", "payload": {"name": "ann", "times": 2}}
    assert task.parts.max_attempts == 4  # MAX_RETRIES = 3: up to 4 executions
    info = task.parts.ctx[INFO_KEY]
    assert set(info) == {"task_name", "created_at"}
    assert info["task_name"] == "greet"
    assert before <= info["created_at"] <= after


async def test_enqueue_copies_the_payload_through_json() -> None:
    class Holder(BackgroundTask):
        TASK_NAME = "holder"
        items: list[int]
        when: datetime.datetime

        async def run(self, task: CurrentTask, app: Any) -> None:
            return None

    storage = MemoryStorage()
    items = [1, 2]
    when = datetime.datetime(2024, 6, 1, 12, 0, tzinfo=datetime.UTC)
    await Holder(items, when).enqueue(storage)
    items.append(3)  # changing the object after enqueue changes nothing stored
    (task,) = stored(storage)
    assert task.args["payload"] == {"items": [1, 2], "when": "2024-06-01T12:00:00+00:00"}


async def test_enqueue_refuses_a_payload_json_cannot_hold() -> None:
    storage = MemoryStorage()
    with pytest.raises(
        CodecError,
        match=r"^Greet: the payload cannot be encoded as JSON: Type is not JSON serializable: set$",
    ):
        await Greet({"ann"}).enqueue(storage)  # type: ignore[arg-type]
    assert len(storage) == 0


class Quote(BackgroundTask):
    TASK_NAME = "quote"

    symbol: str
    price: float | None
    history: list[float] = dataclasses.field(default_factory=list)

    async def run(self, task: CurrentTask, app: Any) -> None:
        return None

    def uniq(self) -> TaskHash | None:
        return TaskHash.default_for_task(self)


NOT_FINITE = "is not a finite number (JSON has no NaN or Infinity)"


@pytest.mark.parametrize(
    ("quote", "where", "bad"),
    [
        (Quote("X", math.nan), 'payload["price"]', "nan"),
        (Quote("X", None, [1.0, math.inf]), 'payload["history"][1]', "inf"),
        (Quote("X", -math.inf), 'payload["price"]', "-inf"),
    ],
)
async def test_enqueue_refuses_nan_and_infinity_in_the_payload(
    quote: Quote, where: str, bad: str, tmp_path: Path
) -> None:
    """JSON writes NaN as null: the task would run with price None. It is refused instead."""
    message = f"^Quote: the payload cannot be encoded as JSON: {re.escape(f'{bad} at {where}')} "
    with pytest.raises(CodecError, match=message + re.escape(NOT_FINITE) + "$"):
        encode_envelope(quote)
    storage = MemoryStorage()
    with pytest.raises(CodecError, match=message):
        await quote.enqueue(storage)
    assert len(storage) == 0
    with JsonStorage(tmp_path / "f.jsonl") as json_storage:
        with pytest.raises(CodecError, match=message):
            await quote.enqueue(json_storage)
        assert len(json_storage) == 0
    # A real None stays a None.
    assert encode_envelope(Quote("X", None))["payload"] == {
        "symbol": "X",
        "price": None,
        "history": [],
    }


def test_task_hash_of_refuses_nan_and_infinity() -> None:
    """TaskHash.of(nan) used to equal TaskHash.of(None): both were hashed as null."""
    with pytest.raises(
        CodecError, match="^" + re.escape(f'TaskHash.of: nan at values[1]["p"] {NOT_FINITE}') + "$"
    ):
        TaskHash.of("x", {"p": math.nan})
    with pytest.raises(CodecError, match=re.escape(f"-inf at values[0] {NOT_FINITE}")):
        TaskHash.of(-math.inf)
    assert TaskHash.of(None) == TaskHash.of(None)
    assert TaskHash.of("x", {"p": None, "q": 1.5}).value


async def test_custom_payload_conversion_round_trips() -> None:
    class Dated(BackgroundTask):
        TASK_NAME = "dated"
        when: datetime.datetime

        def to_payload(self) -> Any:
            return {"when": self.when.timestamp()}

        @classmethod
        def from_payload(cls, payload: Any) -> Dated:
            return cls(datetime.datetime.fromtimestamp(payload["when"], tz=datetime.UTC))

        async def run(self, task: CurrentTask, app: Any) -> None:
            return None

    when = datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC)
    storage = MemoryStorage()
    await Dated(when).enqueue(storage)
    (task,) = stored(storage)
    assert task.args == {"task_name": "dated", "payload": {"when": when.timestamp()}}
    assert Dated.from_payload(task.args["payload"]) == Dated(when)


async def test_enqueue_bad_input() -> None:
    with pytest.raises(
        TypeError,
        match=r"^Greet.enqueue: backend must be a backend with push_task\(\) or a queue "
        r"family with queue\(name\), got 'storage'$",
    ):
        await Greet("ann").enqueue("storage")
    with pytest.raises(TypeError, match=r"^Greet.enqueue: backend must be a backend"):
        await Greet("ann").enqueue(MemoryStorage)

    class BadUniq(BackgroundTask):
        TASK_NAME = "bad-uniq"

        async def run(self, task: CurrentTask, app: Any) -> None:
            return None

        def uniq(self) -> Any:
            return "not-a-hash"

    with pytest.raises(
        TypeError,
        match=r"^\S*BadUniq.uniq\(\) must return a TaskHash or None, got str 'not-a-hash'$",
    ):
        await BadUniq().enqueue(MemoryStorage())


async def test_unique_tasks_need_a_backend_that_reports_status() -> None:
    class PushOnly:
        async def push_task(self, task: Task) -> TaskId:
            raise AssertionError("must not be reached")

    with pytest.raises(
        TypeError,
        match=r"^Report.enqueue: uniq\(\) needs a backend that reports task status "
        r"\(check_status\), or a MemoryStorage; PushOnly does neither$",
    ):
        await Report("d").enqueue(PushOnly())


async def test_queue_family_routes_each_type_to_its_queue() -> None:
    queues = MemoryQueues()
    await Greet("ann").enqueue(queues)
    await Email("a@example.org").enqueue(queues)
    assert queues.names() == ["default", "emails"]
    assert [t.args["task_name"] for t in stored(queues.queue("default"))] == ["greet"]
    assert [t.args["task_name"] for t in stored(queues.queue("emails"))] == ["email"]


def test_memory_queues_bad_input() -> None:
    with pytest.raises(
        ValueError, match=r"^MemoryQueues.queue: name must be a non-empty str, got str ''$"
    ):
        MemoryQueues().queue("")
    with pytest.raises(
        ValueError, match=r"^MemoryQueues: maxsize must be an int >= 1 or None, got int 0$"
    ):
        MemoryQueues(maxsize=0)
    queues = MemoryQueues(maxsize=2)
    assert queues.queue("a") is queues.queue("a")
    assert queues.queue("a").statistics().maxsize == 2
    assert repr(queues) == "MemoryQueues(['a'])"


def _lock_is_free(path: Path) -> bool:
    fd = os.open(str(path), os.O_RDONLY)  # the lock is on the journal file itself
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


async def test_json_storage_stores_the_envelope_and_routes_by_queue(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    storage = JsonStorage(path)
    greet_id = await Greet("ann").enqueue(storage)
    email_id = await Email("a@example.org").enqueue(storage)
    fetched = await storage.fetch_by_id(email_id)
    assert fetched is not None
    assert fetched.args == {"task_name": "email", "payload": {"to": "a@example.org"}}
    assert fetched.parts.max_attempts == 4
    assert fetched.parts.ctx[INFO_KEY]["task_name"] == "email"
    assert [t.parts.task_id for t in await storage.list_tasks()] == [greet_id]
    emails = storage.queue("emails")
    assert [t.parts.task_id for t in await emails.list_tasks()] == [email_id]
    emails.close()
    # The args are orjson text in the journal, as written.
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()[1:]]
    assert orjson.loads(lines[0]["args"]) == {
        "task_name": "greet",
        "payload": {"name": "ann", "times": 1},
    }
    # The handle opened to reach the "emails" queue was closed again: closing
    # ours releases the file.
    storage.close()
    assert _lock_is_free(path)


# -- uniqueness ------------------------------------------------------------------------


async def test_duplicate_while_pending_returns_the_existing_id() -> None:
    storage = MemoryStorage()
    first = await Report("2024-06-01").enqueue(storage)
    assert await Report("2024-06-01").enqueue(storage) == first
    other = await Report("2024-06-02").enqueue(storage)
    assert other != first
    assert len(storage) == 2


async def test_same_hash_of_another_task_type_is_not_a_duplicate() -> None:
    class OtherReport(Report):
        TASK_NAME = "other-report"

    storage = MemoryStorage()
    assert await Report("d").enqueue(storage) != await OtherReport("d").enqueue(storage)
    assert len(storage) == 2


async def test_concurrent_enqueues_of_one_hash_push_one_task() -> None:
    storage = MemoryStorage()
    await Report("other").enqueue(storage)
    ids: list[TaskId] = []

    async def enqueue() -> None:
        ids.append(await Report("d").enqueue(storage))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(enqueue)
    assert len(set(ids)) == 1 and len(ids) == 10
    assert len(storage) == 2


async def _run_pool_until_final(storage: Any, pool: WorkerPool, task_id: TaskId) -> None:
    async def finished() -> None:
        await storage.wait_for_single(task_id)

    await pool.run_until(finished)


@pytest.mark.parametrize(
    ("report", "status"),
    [
        (Report("d"), Status.Done),
        (Report("d", fail=True), Status.Failed),
        (Report("d", abort=True), Status.Killed),
    ],
    ids=["done", "failed", "killed"],
)
async def test_a_finished_hash_is_free_again(
    tmp_path: Path, report: Report, status: Status, autojump_clock: trio.testing.MockClock
) -> None:
    storage = JsonStorage(tmp_path / "f.jsonl")
    pool = WorkerPool(storage).register_task_type(Report)
    pool.configure_queue("default", retention=RetentionMode.KeepAll)  # to read its status
    first = await report.enqueue(storage)
    await _run_pool_until_final(storage, pool, first)
    assert [r.status for r in await storage.check_status([first])] == [status]
    second = await Report("d").enqueue(storage)
    assert second != first
    assert await Report("d").enqueue(storage) == second
    storage.close()


async def test_a_running_task_holds_its_hash(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[TaskId] = []

    class Slow(BackgroundTask):
        TASK_NAME = "slow"

        async def run(self, task: CurrentTask, app: MemoryStorage) -> None:
            seen.append(await Slow().enqueue(app))  # a duplicate of itself, while running
            await trio.sleep(5)

        def uniq(self) -> TaskHash | None:
            return TaskHash("only-one")

    storage = MemoryStorage()
    pool = WorkerPool(storage, app_data=lambda: storage).register_task_type(Slow)
    first = await Slow().enqueue(storage)

    async def stop_after_it_ran() -> None:
        await trio.sleep(10)

    await pool.run_until(stop_after_it_ran)
    assert seen == [first]
    assert len(storage) == 0
    assert await Slow().enqueue(storage) != first


async def test_memory_uniqueness_after_done_and_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(Report)
    done = await Report("a").enqueue(storage)
    failed = await Report("b", fail=True).enqueue(storage)

    async def stop() -> None:
        await trio.sleep(1)

    await pool.run_until(stop)
    assert len(storage) == 0
    assert await Report("a").enqueue(storage) != done
    assert await Report("b").enqueue(storage) != failed


async def test_uniqueness_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    with JsonStorage(path) as storage:
        first = await Report("d").enqueue(storage)
    # A new opening of the file (as in a new process) finds the pending task.
    with JsonStorage(path) as storage:
        assert await Report("d").enqueue(storage) == first
        assert len(storage) == 1
    # The hash is stored with the task.
    with JsonStorage(path) as storage:
        task = await storage.fetch_by_id(first)
        assert task is not None
        assert task.parts.ctx[INFO_KEY]["uniq"] == TaskHash.of("d").value


async def test_uniqueness_after_reopen_frees_a_finished_hash(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    with JsonStorage(path) as storage:
        first = await Report("d", fail=True).enqueue(storage)
        await _run_pool_until_final(storage, WorkerPool(storage).register_task_type(Report), first)
    with JsonStorage(path) as storage:
        assert [r.status for r in await storage.check_status([first])] == [Status.Failed]
        second = await Report("d").enqueue(storage)
        assert second != first
        assert await Report("d").enqueue(storage) == second


async def test_concurrent_enqueues_on_json_storage_push_one_task(tmp_path: Path) -> None:
    storage = JsonStorage(tmp_path / "f.jsonl")
    other_handle = JsonStorage(tmp_path / "f.jsonl")  # the same file and queue
    ids: list[TaskId] = []

    async def enqueue(backend: JsonStorage) -> None:
        ids.append(await Report("d").enqueue(backend))

    async with trio.open_nursery() as nursery:
        for number in range(10):
            nursery.start_soon(enqueue, storage if number % 2 else other_handle)
    assert len(ids) == 10 and len(set(ids)) == 1
    assert len(storage) == 1
    other_handle.close()
    storage.close()


async def test_unique_task_in_another_queue_of_the_file(tmp_path: Path) -> None:
    class UniqueEmail(Email):
        TASK_NAME = "unique-email"

        def uniq(self) -> TaskHash | None:
            return TaskHash.default_for_task(self)

    storage = JsonStorage(tmp_path / "f.jsonl")
    first = await UniqueEmail("a@example.org").enqueue(storage)
    emails = storage.queue("emails")
    assert await UniqueEmail("a@example.org").enqueue(emails) == first
    assert len(emails) == 1 and len(storage) == 0
    emails.close()
    storage.close()


async def test_many_unique_tasks_stay_unique_across_index_sweeps(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(Report)
    first = [await Report(f"day-{n}").enqueue(storage) for n in range(100)]

    async def stop() -> None:
        await trio.sleep(1)

    await pool.run_until(stop)
    # Sweeps forget finished tasks; pending ones keep their ids.
    second = [await Report(f"day-{n}").enqueue(storage) for n in range(150)]
    assert not set(first) & set(second)
    again = [await Report(f"day-{n}").enqueue(storage) for n in range(150)]
    assert again == second
    assert len(storage) == 150


# -- the example ------------------------------------------------------------------------


def test_background_tasks_example_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "background_tasks.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert "duplicate enqueue returned the same id: True" in lines
    assert "resize photo.jpg -> 800px" in lines
    assert "email to ann@example.org: welcome (attempt 2)" in lines
    assert lines[-1] == "results: ['resized photo.jpg', 'sent', 'resized cat.png']"
