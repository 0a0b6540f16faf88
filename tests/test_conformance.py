"""pyapalis's own backends pass the conformance suite shipped in ``pyapalis.testing``."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from pyapalis import MemoryStorage, Task, TaskId
from pyapalis.backends._json._storage import JsonStorage
from pyapalis.testing import (
    BackendConformance,
    BackendHarness,
    SharedBackendConformance,
    SharedBackendHarness,
)
from tests._postgres import DSN as POSTGRES_DSN
from tests._postgres import needs_postgres
from tests._postgres import pg_schema as pg_schema


class TestMemoryStorage(BackendConformance):
    @pytest.fixture
    def harness(self) -> BackendHarness:
        storage = MemoryStorage()
        return BackendHarness(open=lambda: storage)


class TestJsonStorage(BackendConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> BackendHarness:
        path = tmp_path / "tasks.jsonl"

        def crash(storage: JsonStorage) -> None:
            # Closing the file without acking or handing anything back leaves
            # the journal exactly as a killed process would.
            storage.close()

        return BackendHarness(
            open=lambda: JsonStorage(path), close=lambda storage: storage.close(), crash=crash
        )


class TestJsonStorageSharedFile(BackendConformance):
    """A second typed queue in a file that also holds another queue's tasks."""

    @pytest.fixture
    def harness(self, tmp_path: Path) -> BackendHarness:
        path = tmp_path / "shared.jsonl"
        other = JsonStorage(path, queue="other")

        def open_emails() -> JsonStorage:
            return JsonStorage(path, queue="emails")

        def close(storage: JsonStorage) -> None:
            storage.close()

        def crash(storage: JsonStorage) -> None:
            storage.close()
            other.close()  # the last handle: the file is released, as at process exit

        return BackendHarness(open=open_emails, close=close, crash=crash)


# -- the suite itself ---------------------------------------------------------------


class _LateToQueue(MemoryStorage):
    """A MemoryStorage on a busy machine: 50 ms of system time pass before each push lands."""

    lag: ClassVar[list[float]] = [0.0]

    async def push_task(self, task: Task) -> TaskId:
        self.lag[0] += 0.05
        return await super().push_task(task)


@pytest.fixture(scope="class")
def busy_system_clock() -> Iterator[None]:
    """The system clock, plus the time the pushes of :class:`_LateToQueue` took.

    Class scope: it is installed before the suite's own (function-scoped) wall
    clock, which must take over from it.
    """
    system = time.time
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: system() + _LateToQueue.lag[0])
        yield


@pytest.mark.usefixtures("busy_system_clock")
class TestOnABusyMachine(BackendConformance):
    """The suite's timing does not depend on how busy the machine is.

    Here the system clock jumps 50 ms ahead while each task is pushed, as it
    does on a loaded machine between building a task and queueing it. A suite
    that read the system clock would see the scheduled task come due 50 ms
    early in virtual time; the suite's own wall clock moves only with trio's.
    """

    @pytest.fixture
    def harness(self) -> BackendHarness:
        storage = _LateToQueue()
        return BackendHarness(open=lambda: storage)


def test_every_skip_names_its_cause() -> None:
    """pytest-trio reports a skip inside a trio test as a bare "Skipped";
    the suite's skips keep their reasons."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            f"{__file__}::TestMemoryStorage",
            f"{Path(__file__).parent / 'test_custom_backend.py'}::TestDequeueBackendConformance",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    skips = [
        re.sub(r"\.py:\d+:", ".py:<line>:", line)
        for line in proc.stdout.splitlines()
        if line.startswith("SKIPPED")
    ]
    reasons = {line.split(": ", 1)[1] for line in skips}
    assert reasons == {
        f"{backend} does not implement {capability}"
        for backend, capability in [
            ("CustomBackend", "FetchById"),
            ("CustomBackend", "ListTasks"),
            ("CustomBackend", "RegisterWorker"),
            ("CustomBackend", "ResumeById"),
            ("CustomBackend", "WaitForCompletion"),
            ("MemoryStorage", "RegisterWorker"),
            ("MemoryStorage", "ResumeById"),
        ]
    } | {
        "not persistent: the harness has no crash() (tasks die with the process)",
        "the harness says the backend does not keep ids unique (unique_ids)",
    }, proc.stdout


class TestSqliteStorage(BackendConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> BackendHarness:
        from pyapalis import SqliteStorage

        path = tmp_path / "tasks.db"

        async def crash(storage: SqliteStorage) -> None:
            # The handle goes away without acking what it took: as after a
            # killed process, those tasks stay Running under a gone worker.
            storage.close()

        return BackendHarness(
            open=lambda: SqliteStorage(path), close=lambda storage: storage.aclose(), crash=crash
        )


class TestSqliteStorageShared(SharedBackendConformance):
    @pytest.fixture
    def shared_harness(self, tmp_path: Path) -> SharedBackendHarness:
        return SharedBackendHarness(url=f"sqlite://{tmp_path}/shared.db?lease=1", lease=1.0)


@needs_postgres
class TestPostgresStorage(BackendConformance):
    """PostgreSQL, each test in a schema of its own; a crash closes every session
    without handing anything back, as a killed process would."""

    @pytest.fixture
    def harness(self, pg_schema: str) -> BackendHarness:
        from pyapalis import PostgresStorage

        async def close(storage: PostgresStorage) -> None:
            await storage.aclose()

        return BackendHarness(
            open=lambda: PostgresStorage(POSTGRES_DSN, schema=pg_schema),
            close=close,
            crash=close,
        )


@needs_postgres
class TestPostgresStorageShared(SharedBackendConformance):
    @pytest.fixture
    def shared_harness(self, pg_schema: str) -> SharedBackendHarness:
        return SharedBackendHarness(url=f"{POSTGRES_DSN}?schema={pg_schema}&lease=1", lease=1.0)
