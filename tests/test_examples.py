"""The examples run as users run them: ``python examples/worker.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_worker_example_runs() -> None:
    # The example sleeps for one real second in its handler.
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "worker.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Start rango-tango"
    assert "handling 1" in lines
    successes = [line for line in lines if line.startswith("Success(")]
    assert len(successes) == 1
    assert successes[0].endswith(") rango-tango")
    assert lines[-1] == "Stop rango-tango"
    assert lines.index(successes[0]) < len(lines) - 1
    assert proc.stderr == ""


# (The embedding examples are run by tests/test_runtime.py.)
@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("background_tasks", "results: ['resized photo.jpg', 'sent', 'resized cat.png']"),
        ("cron", "again: 0 new tasks"),
        ("custom_backend", "rows left in the table: 0"),
        ("logging_layer", "sending to last@example.com"),
        ("monitor", "workers_stopped=2, workers_failed=0"),
        ("sqlite_processes", "worker processes that ran tasks: 2\nworkers exited with [0, 0]"),
        ("workflow", "result: invoice: [4, 12, 30] = 46"),
    ],
)
def test_the_other_examples_run(example: str, expected: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{example}.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout
    assert proc.stderr == ""
