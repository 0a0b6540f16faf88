"""A workflow survives its worker being SIGKILLed between two steps (SqliteStorage).

The run's state is in the file, not in the worker: after the kill, a new
process finds the first step done and the second abandoned, recovers it, and
the run completes. The first step does not run again; the second runs twice
(at-least-once: it was cut off mid-way). See ``tests/_workflow_process.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

HELPER = str(Path(__file__).resolve().parent / "_workflow_process.py")


def test_a_run_completes_after_its_worker_is_killed_between_two_steps(tmp_path: Path) -> None:
    path, log = str(tmp_path / "flows.db"), str(tmp_path / "steps.log")
    crashing = subprocess.Popen(
        [sys.executable, HELPER, "crash", path, log],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert crashing.stdout is not None
        assert crashing.stdout.readline() == "in two\n"  # step one is done, two is running
        os.kill(crashing.pid, signal.SIGKILL)
    finally:
        crashing.kill()
        _, stderr = crashing.communicate(timeout=60)
    assert crashing.returncode == -signal.SIGKILL, stderr

    restart = subprocess.run(
        [sys.executable, HELPER, "finish", path, log],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert restart.returncode == 0, restart.stderr
    assert restart.stderr == ""
    assert restart.stdout.splitlines() == [
        "before Running Done,Running",
        "resumed 1",
        "result done 12",  # (5 + 1) * 2
    ]
    assert Path(log).read_text().splitlines() == ["one", "two", "two", "three"]
