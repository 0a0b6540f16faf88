"""The ``pyapalis`` command: every sub-command, its tables and JSON, its exit codes and errors.

Most cases call :func:`pyapalis._cli.main` in this process on a real SQLite
file; ``--version``, ``python -m pyapalis`` and the worker's graceful stop on
SIGINT/SIGTERM run as real subprocesses with real signals.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from pyapalis import SqliteStorage, Status, TaskBuilder, TaskId, __version__
from pyapalis._cli import main
from pyapalis._ops._errors import ExitCode

WAIT = 20.0
"""Seconds to wait for a subprocess's line or exit before failing (never reached when well)."""

ROOT = Path(__file__).resolve().parent.parent


def _seed(path: Path, count: int = 3, *, failed: int = 0) -> list[str]:
    """Push ``count`` Pending tasks and ``failed`` Failed ones into a new SQLite file."""

    async def seed() -> list[str]:
        ids: list[str] = []
        async with SqliteStorage(path) as storage:
            for index in range(count):
                ids.append(str(await storage.push({"n": index})))
            for index in range(failed):
                task = TaskBuilder({"bad": index}).id(f"failed-{index}").build()
                task.parts.status = Status.Failed
                ids.append(str(await storage.push_task(task)))
                await storage.update(task)
        return ids

    return trio.run(seed)


def _status_of(path: Path, task_id: str) -> Status | None:
    async def read() -> Status | None:
        async with SqliteStorage(path) as storage:
            task = await storage.fetch_by_id(TaskId(task_id))
            return None if task is None else task.parts.status

    return trio.run(read)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "tasks.db"


def test_list_prints_an_aligned_table(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = _seed(db, 3)
    code, out, err = run(capsys, "tasks", f"sqlite://{db}", "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "ATTEMPTS", "RUN_AT", "ARGS"]
    assert [line.split()[0] for line in lines[1:]] == ids
    # Aligned: every column starts at the same offset on every line.
    start = lines[0].index("STATUS")
    assert all(line[start:].startswith("Pending") for line in lines[1:])


def test_list_json_filters_and_pages(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = _seed(db, 5, failed=2)
    code, out, _ = run(capsys, "tasks", f"sqlite://{db}", "list", "--status", "failed", "--json")
    assert code == 0
    assert [row["id"] for row in json.loads(out)] == ["failed-0", "failed-1"]
    code, out, _ = run(
        capsys, "tasks", f"sqlite://{db}", "list", "--page", "2", "--page-size", "2", "--json"
    )
    assert [row["id"] for row in json.loads(out)] == ids[2:4]
    code, out, _ = run(capsys, "tasks", f"sqlite://{db}", "list", "--page-size", "2")
    assert out.splitlines()[-1] == "(page 1; --page 2 for more)"
    code, out, _ = run(capsys, "tasks", f"sqlite://{db}", "list", "--queue", "other")
    assert (code, out) == (0, "(none)\n")


def test_show_retry_and_kill(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pending, failed = _seed(db, 1, failed=1)
    url = f"sqlite://{db}"
    code, out, _ = run(capsys, "tasks", url, "show", failed, "--json")
    record = json.loads(out)
    assert (code, record["status"], record["args"]) == (0, "Failed", {"bad": 0})
    code, out, _ = run(capsys, "tasks", url, "retry", failed)
    assert code == 0 and "status      : Pending" in out
    assert _status_of(db, failed) is Status.Pending
    code, out, err = run(capsys, "tasks", url, "retry", pending)
    assert code == ExitCode.CONFLICT
    assert err == (
        f"pyapalis: error: task {pending} is Pending: only Failed, Killed or abandoned "
        f"tasks can be retried\n"
    )
    code, out, _ = run(capsys, "tasks", url, "kill", pending, "--json")
    assert (code, json.loads(out)["status"], json.loads(out)["error"]) == (
        0,
        "Killed",
        "killed by an operator",
    )
    code, _, err = run(capsys, "tasks", url, "kill", pending)
    assert code == ExitCode.CONFLICT and "is Killed" in err
    code, out, _ = run(capsys, "tasks", url, "retry", pending)
    code, out, _ = run(capsys, "tasks", url, "kill", pending, "--reason", "duplicate order")
    assert "error       : duplicate order" in out


def test_purge_deletes_one_status_with_progress(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _seed(db, 30, failed=2)
    code, out, err = run(capsys, "tasks", f"sqlite://{db}", "purge", "--status", "Pending")
    assert (code, out) == (0, "deleted 30 Pending task(s)\n")
    # Not a terminal: one progress line every tenth, the last one complete.
    assert err.splitlines()[-1] == "purging 30/30" and len(err.splitlines()) == 11
    assert _status_of(db, ids[0]) is None
    assert _status_of(db, "failed-0") is Status.Failed
    code, out, _ = run(capsys, "tasks", f"sqlite://{db}", "purge", "--status", "failed", "--json")
    assert (code, json.loads(out)) == (0, {"status": "Failed", "deleted": 2})
    code, _, err = run(capsys, "tasks", f"sqlite://{db}", "purge", "--status", "Running")
    assert code == ExitCode.USAGE and "belong to their workers" in err


def test_workers_and_migrate(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "migrate", f"sqlite://{db}")
    assert (code, out) == (0, f"sqlite://{db}: schema up to date\n")
    assert db.exists()
    code, out, _ = run(capsys, "migrate", "memory://")
    assert (code, out) == (0, "memory://: MemoryStorage keeps no schema; nothing to migrate\n")

    async def register() -> None:
        async with SqliteStorage(db) as storage:
            await storage.register_worker("mailer")

    trio.run(register)
    code, out, _ = run(capsys, "workers", f"sqlite://{db}", "--json")
    [worker] = json.loads(out)
    assert (code, worker["name"], worker["pid"]) == (0, "mailer", os.getpid())
    code, out, _ = run(capsys, "workers", f"sqlite://{db}")
    assert out.splitlines()[0].split() == ["NAME", "ID", "HOST", "PID", "LAST_SEEN"]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["tasks", "redis-ish://x", "list"],
            ExitCode.USAGE,
            "open_backend: unknown scheme in 'redis-ish://x'",
        ),
        (["tasks", "sqlite:///{db}?colour=red", "list"], ExitCode.USAGE, "unknown option 'colour'"),
        (["tasks", "sqlite:///{db}", "show", "nope"], ExitCode.NOT_FOUND, "no task 'nope'"),
        (["tasks", "sqlite:///{db}", "list", "--status", "Lost"], ExitCode.USAGE, "unknown status"),
        (
            ["tasks", "memory://", "retry", "x"],
            ExitCode.UNSUPPORTED,
            "MemoryStorage cannot retry a task: it does not implement ResumeById",
        ),
        (["workers", "memory://"], ExitCode.UNSUPPORTED, "does not implement ListWorkers"),
        (["tasks", "json:///{dir}", "list"], ExitCode.FAILURE, "Is a directory"),
        (["tasks", "sqlite://{garbage}", "list"], ExitCode.FAILURE, "not a database"),
        (["worker", "no_such_module:worker"], ExitCode.USAGE, "cannot import module"),
        (["worker", "json:nothing"], ExitCode.USAGE, "'json' has no attribute 'nothing'"),
        (["worker", "os:getcwd"], ExitCode.USAGE, "returned a str"),
        (["worker", "json:dumps"], ExitCode.USAGE, "cannot be called with no argument"),
        (["worker", "os:sep"], ExitCode.USAGE, "is a str, not a Worker"),
        (["worker", "json"], ExitCode.USAGE, "expected MODULE:ATTR"),
    ],
)
def test_errors_are_one_line_with_their_exit_code(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: ExitCode,
    message: str,
) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database file, whatever its name says" * 100)
    argv = [arg.format(db=tmp_path / "t.db", dir=tmp_path, garbage=garbage) for arg in argv]
    got, out, err = run(capsys, *argv)
    assert got == code
    assert out == ""
    assert err.startswith("pyapalis: error: ") and err.count("\n") == 1
    assert message in err
    assert "Traceback" not in err


def test_a_json_store_held_by_another_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tasks.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pyapalis; s = pyapalis.JsonStorage(sys.argv[1]); "
            "print('held', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        code, out, err = run(capsys, "tasks", f"json://{path}", "list")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=WAIT)
        holder.stdout.close()
    assert (code, out) == (ExitCode.FAILURE, "")
    assert err.startswith(f"pyapalis: error: JsonStorage: {path} is in use by process ")
    assert err.count("\n") == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tasks"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["tasks", "memory://", "list", "--page", "0"])
    assert exit_info.value.code == 2
    assert "must be >= 1, got 0" in capsys.readouterr().err


# -- real processes ------------------------------------------------------------


def test_version_as_console_script_and_module() -> None:
    for command in (
        [sys.executable, "-m", "pyapalis", "--version"],
        [str(Path(sys.executable).parent / "pyapalis"), "--version"],
    ):
        if not Path(command[0]).exists():
            pytest.fail(f"{command[0]} is missing: pip install -e . installs the console script")
        done = subprocess.run(command, capture_output=True, text=True, timeout=WAIT, check=False)
        assert (done.returncode, done.stdout) == (0, f"pyapalis {__version__}\n")


APP = textwrap.dedent(
    """
    import os

    import trio

    from pyapalis import (
        BackgroundTask,
        CurrentTask,
        Monitor,
        SqliteStorage,
        WorkerBuilder,
        WorkerContext,
        WorkerPool,
    )


    async def handle(item: dict, worker: WorkerContext) -> int:
        item = item["n"]
        print(f"started {item}", flush=True)
        while not worker.is_shutting_down:  # finishes only once the stop began
            await trio.sleep(0.005)
        print(f"finished {item}", flush=True)
        return item


    def make(concurrency: int = 1):
        storage = SqliteStorage(os.environ["APP_DB"])
        return WorkerBuilder("cli").backend(storage).concurrency(concurrency).build(handle)


    monitor = Monitor().register(lambda _restarts: make(2))


    async def never_ends(item: dict) -> None:
        print(f"stuck {item['n']}", flush=True)
        await trio.sleep_forever()


    def stuck():
        storage = SqliteStorage(os.environ["APP_DB"])
        return WorkerBuilder("stuck").backend(storage).build(never_ends)


    class Say(BackgroundTask):
        TASK_NAME = "say"
        n: int

        async def run(self, task: CurrentTask, app: None) -> None:
            print(f"said {self.n}", flush=True)


    async def pool():  # an async factory of a WorkerPool
        storage = SqliteStorage(os.environ["APP_DB"])
        return WorkerPool(storage).register_task_type(Say)
    """
)


class _Lines:
    """A subprocess's output lines, read on a thread so that waiting has a time limit."""

    def __init__(self, stream: Any) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("<eof>")

    def next(self) -> str:
        try:
            line = self.lines.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no output within {WAIT} s; so far: {self.seen}")
        self.seen.append(line)
        return line

    def rest(self) -> list[str]:
        lines = []
        while (line := self.next()) != "<eof>":
            lines.append(line)
        return lines


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "app.py").write_text(APP)
    yield tmp_path


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    ("target", "signum"),
    [
        (["app:make", "--concurrency", "2"], signal.SIGTERM),
        (["app:make", "--concurrency", "2"], signal.SIGINT),
        (["app:monitor"], signal.SIGTERM),
    ],
)
def test_worker_stops_gracefully_on_a_signal(
    app: Path, target: list[str], signum: signal.Signals
) -> None:
    db = app / "tasks.db"
    ids = _seed(db, 2)
    env = {**os.environ, "APP_DB": str(db)}
    with subprocess.Popen(
        [sys.executable, "-m", "pyapalis", "worker", *target],
        cwd=app,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            out = _Lines(process.stdout)
            err = _Lines(process.stderr)
            assert "running" in err.next()
            assert sorted([out.next(), out.next()]) == ["started 0", "started 1"]
            process.send_signal(signum)
            assert process.wait(timeout=WAIT) == 0
            assert sorted(out.rest()) == ["finished 0", "finished 1"]
            assert err.rest() == [
                f"pyapalis worker: {signum.name}: stopping gracefully",
                "pyapalis worker: stopped",
            ]
        finally:
            if process.poll() is None:
                process.kill()
    assert [_status_of(db, task_id) for task_id in ids] == [Status.Done, Status.Done]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_worker_runs_a_worker_pool_from_an_async_factory(app: Path) -> None:
    db = app / "tasks.db"

    async def seed() -> None:
        async with SqliteStorage(db) as storage:
            for n in range(2):
                await storage.push({"task_name": "say", "payload": {"n": n}})

    trio.run(seed)
    with subprocess.Popen(
        [sys.executable, "-m", "pyapalis", "worker", "app:pool"],
        cwd=app,
        env={**os.environ, "APP_DB": str(db)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            out = _Lines(process.stdout)
            err = _Lines(process.stderr)
            assert "(WorkerPool)" in err.next()
            assert sorted([out.next(), out.next()]) == ["said 0", "said 1"]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=WAIT) == 0
            assert err.rest()[-1] == "pyapalis worker: stopped"
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_second_signal_stops_at_once_and_hands_the_task_back(app: Path) -> None:
    db = app / "tasks.db"
    [task_id] = _seed(db, 1)
    with subprocess.Popen(
        [sys.executable, "-m", "pyapalis", "worker", "app:stuck"],
        cwd=app,
        env={**os.environ, "APP_DB": str(db)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            out = _Lines(process.stdout)
            err = _Lines(process.stderr)
            assert "running" in err.next()
            assert out.next() == "stuck 0"
            process.send_signal(signal.SIGTERM)
            assert err.next() == "pyapalis worker: SIGTERM: stopping gracefully"
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=WAIT) == 0
            assert err.rest() == [
                "pyapalis worker: SIGINT again: stopping now",
                "pyapalis worker: stopped",
            ]
        finally:
            if process.poll() is None:
                process.kill()

    async def read() -> tuple[Status, int]:
        async with SqliteStorage(db) as storage:
            task = await storage.fetch_by_id(TaskId(task_id))
            assert task is not None
            return task.parts.status, task.parts.attempt.current()

    # Handed back: Pending again, and the interrupted execution does not count.
    assert trio.run(read) == (Status.Pending, 0)


def test_worker_concurrency_needs_a_factory(
    app: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_DB", str(app / "tasks.db"))
    sys.path.insert(0, str(app))
    try:
        code, _, err = run(capsys, "worker", "app:monitor", "--concurrency", "2")
    finally:
        sys.path.remove(str(app))
        sys.modules.pop("app", None)
    assert code == ExitCode.USAGE
    assert "already built Monitor; for --concurrency make it a factory" in err


def test_the_same_commands_on_a_json_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pyapalis import JsonStorage

    path = tmp_path / "tasks.jsonl"

    async def seed() -> list[str]:
        async with JsonStorage(path) as storage:
            return [str(await storage.push(n)) for n in range(3)]

    first, second, third = trio.run(seed)
    url = f"json://{path}"
    code, out, _ = run(capsys, "tasks", url, "kill", first, "--json")
    assert (code, json.loads(out)["status"]) == (0, "Killed")
    code, out, _ = run(capsys, "tasks", url, "retry", first, "--json")
    assert (code, json.loads(out)["status"]) == (0, "Pending")
    code, out, _ = run(capsys, "tasks", url, "kill", second)
    code, out, _ = run(capsys, "tasks", url, "purge", "--status", "killed", "--json")
    assert (code, json.loads(out)) == (0, {"status": "Killed", "deleted": 1})
    code, out, _ = run(capsys, "tasks", url, "list", "--json")
    assert [row["id"] for row in json.loads(out)] == [first, third]
