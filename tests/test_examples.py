"""The examples run as users run them: ``python examples/worker.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
