"""The SQLite benchmark must not rot: it runs end to end at a tiny size (slow: worker processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_sqlite_benchmark_runs() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.sqlite_bench",
            "--n",
            "400",
            "--latency-samples",
            "5",
            "--huey-n",
            "50",
            "--repeats",
            "1",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name in (
        "raw sqlite3 loop NORMAL",
        "SqliteStorage NORMAL: push_bulk + drain",
        "SqliteStorage FULL: push_bulk + drain",
        "JsonStorage: push_bulk + drain",
        "huey SqliteHuey",
        "SqliteStorage FULL: pushes one by one from another process",
        "SqliteStorage: idle pickup, push from another process",
    ):
        assert any(line.startswith(name) for line in lines), (name, proc.stdout)
    assert sum("tasks/s" in line for line in lines) >= 7
    assert sum(" p50 " in line for line in lines) == 2
