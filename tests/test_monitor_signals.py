"""Monitor.run_with_signal in a real process: SIGTERM drains, a second signal stops at once.

Each test starts a small program running a Monitor with tasks in flight, waits
for it to print ``ready`` (never a fixed sleep), signals it, and reads what it
printed. These run in real time; each takes a fraction of a second.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WAIT = 10.0
"""Seconds to wait for a line or an exit before failing (never reached when all is well)."""

PROGRAM = textwrap.dedent(
    """
    import sys

    import trio

    from pyapalis import MemoryStorage, WorkerBuilder, WorkerContext
    from pyapalis.backends._json._storage import JsonStorage
    from pyapalis._monitor import Monitor

    MODE = sys.argv[1]            # "finish": in-flight tasks end soon after the signal
    PATH = sys.argv[2]            # "" for a MemoryStorage, else a JsonStorage file
    IN_FLIGHT = 4                 # 2 workers x concurrency 2
    started = 0


    async def task(item: int, worker: WorkerContext) -> None:
        global started
        started += 1
        print(f"started {item}", flush=True)
        if started == IN_FLIGHT:
            print("ready", flush=True)
        while not worker.is_shutting_down:
            await trio.sleep(0.005)
        if MODE == "finish":
            await trio.sleep(0.05)  # still finishing after the signal
            print(f"finished {item}", flush=True)
            return
        print(f"draining {item}", flush=True)
        try:
            await trio.sleep_forever()
        finally:
            print(f"interrupted {item}", flush=True)


    async def main() -> None:
        storage = JsonStorage(PATH) if PATH else MemoryStorage()
        if len(storage) == 0:
            await storage.push_bulk(range(6))
        monitor = Monitor()
        for name in ("left", "right"):
            monitor.register(
                lambda restarts, name=name: (
                    WorkerBuilder(name).backend(storage).concurrency(2).build(task)
                )
            )
        await monitor.run_with_signal()
        if PATH:
            tasks = await storage.list_tasks(page_size=100)
            storage.close()
        else:
            tasks = []
            while (taken := storage.take_nowait()) is not None:
                tasks.append(taken)
        for t in sorted(tasks, key=lambda t: t.args):
            print(f"task {t.args} {t.parts.status.value} {t.parts.attempt.current()}", flush=True)
        print("returned", flush=True)


    trio.run(main)
    """
)

SECOND_RUN = textwrap.dedent(
    """
    import sys

    import trio

    from pyapalis import Status, WorkerBuilder
    from pyapalis.backends._json._storage import JsonStorage
    from pyapalis._monitor import Monitor


    async def task(item: int) -> None:
        print(f"finished {item}", flush=True)


    async def main() -> None:
        storage = JsonStorage(sys.argv[1])

        async def all_done() -> None:
            while await storage.list_tasks(status=Status.Pending):
                await trio.sleep(0.01)

        monitor = Monitor().register(WorkerBuilder("again").backend(storage).build(task))
        await monitor.run_until(all_done)
        for t in sorted(await storage.list_tasks(page_size=100), key=lambda t: t.args):
            print(f"task {t.args} {t.parts.status.value} {t.parts.attempt.current()}", flush=True)
        storage.close()


    trio.run(main)
    """
)


class Program:
    """A Python program in a subprocess whose stdout lines are read with a timeout."""

    def __init__(self, source: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", source, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        # Both pipes are drained by threads, so the program never blocks on a
        # full pipe and stdout can be read line by line with a timeout.
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self._stderr.append(self.proc.stderr.read())

    def wait_for(self, marker: str, *, prefix: bool = False) -> None:
        """Read lines until ``marker`` (or a line starting with it, with ``prefix``);
        fail if the program ends or stalls first."""
        while True:
            try:
                line = self._queue.get(timeout=WAIT)
            except queue.Empty:
                pytest.fail(f"no {marker!r} line within {WAIT}s; got {self.lines}")
            if line is None:
                pytest.fail(f"the program ended before {marker!r}: {self.finish()}")
            self.lines.append(line)
            if line == marker or (prefix and line.startswith(marker)):
                return

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self) -> tuple[int, list[str], str]:
        """Wait for the exit: (exit code, every stdout line, stderr)."""
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the program did not exit within {WAIT}s; stdout so far: {self.lines}")
        for reader in self._readers:
            reader.join(WAIT)
        while (line := self._queue.get_nowait()) is not None:
            self.lines.append(line)
        return self.proc.returncode, self.lines, "".join(self._stderr)

    def close(self) -> None:
        """Kill the program if it still runs, and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for reader in self._readers:
            reader.join(WAIT)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def started_items(lines: list[str], word: str) -> set[str]:
    return {line.split()[1] for line in lines if line.startswith(f"{word} ")}


def test_sigterm_lets_in_flight_tasks_finish_and_exits_0() -> None:
    program = Program(PROGRAM, "finish", "")
    try:
        program.wait_for("ready")
        program.signal(signal.SIGTERM)
        code, lines, stderr = program.finish()
    finally:
        program.close()
    assert code == 0, stderr
    started = started_items(lines, "started")
    assert len(started) == 4
    assert started_items(lines, "finished") == started  # every in-flight task finished
    # The two tasks never pulled are still queued, untouched.
    queued = sorted({"0", "1", "2", "3", "4", "5"} - started)
    assert [line for line in lines if line.startswith("task ")] == [
        f"task {item} Pending 0" for item in queued
    ]
    assert lines[-1] == "returned"
    assert "Traceback" not in stderr


def test_a_second_signal_stops_at_once_and_hands_tasks_back() -> None:
    program = Program(PROGRAM, "stubborn", "")
    try:
        program.wait_for("ready")
        program.signal(signal.SIGTERM)
        for _ in range(4):  # every in-flight task saw the graceful shutdown
            program.wait_for("draining ", prefix=True)
        program.signal(signal.SIGINT)  # either signal counts
        code, lines, stderr = program.finish()
    finally:
        program.close()
    assert code == 0, stderr
    started = started_items(lines, "started")
    assert started_items(lines, "interrupted") == started
    assert "finished" not in " ".join(lines)
    # All six are back in the storage, the interrupted executions not counted.
    assert [line for line in lines if line.startswith("task ")] == [
        f"task {item} Pending 0" for item in range(6)
    ]
    assert lines[-1] == "returned"
    assert "Traceback" not in stderr


def test_sigterm_with_json_storage_loses_nothing_and_a_second_run_finishes_the_rest(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "tasks.jsonl")
    program = Program(PROGRAM, "finish", path)
    try:
        program.wait_for("ready")
        program.signal(signal.SIGTERM)
        code, lines, stderr = program.finish()
    finally:
        program.close()
    assert code == 0, stderr
    first = started_items(lines, "finished")
    assert len(first) == 4 and started_items(lines, "started") == first
    rest = sorted({"0", "1", "2", "3", "4", "5"} - first)
    statuses = [line for line in lines if line.startswith("task ")]
    assert statuses == [
        f"task {item} Done 1" if str(item) in first else f"task {item} Pending 0"
        for item in range(6)
    ]

    again = Program(SECOND_RUN, path)
    try:
        code, lines, stderr = again.finish()
    finally:
        again.close()
    assert code == 0, stderr
    assert sorted(started_items(lines, "finished")) == rest  # only what was left
    assert [line for line in lines if line.startswith("task ")] == [
        f"task {item} Done 1" for item in range(6)
    ]


def test_the_monitor_example_runs() -> None:
    program = Program((EXAMPLES / "monitor.py").read_text())
    try:
        code, lines, stderr = program.finish()
    finally:
        program.close()
    assert code == 0, stderr
    assert stderr == ""
    assert sorted(line for line in lines if line.startswith("squared ")) == sorted(
        f"squared {n} = {n * n}" for n in range(6)
    )
    assert {line for line in lines if line.startswith("Start ")} == {
        "Start rango-tango-0",
        "Start rango-tango-1",
    }
    assert lines[-1].startswith("MonitorStatistics(workers_registered=2")
