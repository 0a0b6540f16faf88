"""Every Python block of README.md runs as shown.

This module is also the one place of the rule for the guides under docs/
(tests/test_docs.py runs theirs with :func:`blocks` and :func:`run_block`).
Each ```python block runs as a script of its own, in an empty directory, and
must exit 0 with nothing on stderr. An HTML comment just before a block says
when it is not a plain script:

* ``<!-- readme-test: pytest -->``: the block is a test module; pytest runs it
  and every test passes.
* ``<!-- readme-test: interrupt after "TEXT" -->``: the block runs until
  stopped; it gets SIGINT once it has printed the line TEXT, and must exit 0.
* ``<!-- readme-test: needs redis -->``: a script that talks to the local
  Redis server; skipped (saying so) when none answers, never in CI.
* ``<!-- readme-test: script, needs postgres -->``: a script that uses the
  PostgreSQL server (``DATABASE_URL``) in the schema ``demo``, dropped before
  and after; skipped (saying so) when none answers, never in CI.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TIMEOUT = 120  # a guard against a hung block, never a measurement

_BLOCK = re.compile(
    r"(?:<!-- (?:readme|docs)-test: (?P<mode>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```$",
    re.DOTALL | re.MULTILINE,
)


@dataclass(frozen=True)
class Block:
    source: str  # the file, relative to the checkout
    line: int
    lang: str
    mode: str
    code: str


def blocks(path: Path = README) -> list[Block]:
    """The fenced blocks of ``path`` (a Markdown file), with the mode each is marked with."""
    text = path.read_text(encoding="utf-8")
    return [
        Block(
            source=path.relative_to(ROOT).as_posix(),
            line=text.count("\n", 0, match.start("code")) + 1,
            lang=match["lang"],
            mode=match["mode"] or "script",
            code=match["code"],
        )
        for match in _BLOCK.finditer(text)
    ]


PYTHON = [block for block in blocks() if block.lang == "python"]

NEEDS_POSTGRES = "script, needs postgres"


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # A block imports the pyapalis under test, as this process does.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def test_the_readme_has_its_blocks() -> None:
    assert len(PYTHON) >= 10
    # The set-up is two shell commands: install and run an example, run the tests.
    shell = [block.code.strip() for block in blocks() if block.lang == "sh"]
    assert shell == [
        'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" '
        "&& .venv/bin/python examples/worker.py",
        ".venv/bin/python -m pytest",
    ]
    assert {block.mode for block in PYTHON} <= {
        "script",
        "pytest",
        "needs redis",
        NEEDS_POSTGRES,
    } | {block.mode for block in PYTHON if block.mode.startswith("interrupt after ")}


@pytest.mark.parametrize("block", PYTHON, ids=[f"line{block.line}" for block in PYTHON])
def test_readme_block_runs_as_shown(block: Block, tmp_path: Path) -> None:
    run_block(block, tmp_path)


def run_block(block: Block, tmp_path: Path) -> None:
    """Run ``block`` in the empty directory ``tmp_path`` as its mode says; assert it passed."""
    if block.mode == "pytest":
        module = tmp_path / f"test_readme_line{block.line}.py"
        module.write_text(block.code, encoding="utf-8")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", module.name]
        proc = subprocess.run(
            command,
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert re.search(r"^\d+ passed in ", proc.stdout.splitlines()[-1]), proc.stdout
        return
    script = tmp_path / "snippet.py"
    script.write_text(block.code, encoding="utf-8")
    if block.mode == NEEDS_POSTGRES:
        _run_with_postgres(script)
        return
    if block.mode == "needs redis":
        from _redis_support import REDIS_UNAVAILABLE

        if REDIS_UNAVAILABLE is not None:
            pytest.skip(REDIS_UNAVAILABLE)
    if block.mode in ("script", "needs redis"):
        proc = subprocess.run(
            [sys.executable, script.name],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        return
    match = re.fullmatch(r'interrupt after "(.*)"', block.mode)
    assert match, f"unknown test mode {block.mode!r} at {block.source} line {block.line}"
    returncode, stdout, stderr = _run_until_printed(script, match[1])
    assert returncode == 0, stderr
    assert stderr == ""
    assert match[1] in stdout.splitlines()


def _run_with_postgres(script: Path) -> None:
    from tests._optional import IN_CI
    from tests._postgres import DSN, REASON, drop_schema

    if REASON is not None and not IN_CI:
        pytest.skip(REASON)
    drop_schema("demo")
    try:
        proc = subprocess.run(
            [sys.executable, script.name],
            cwd=script.parent,
            env={**_env(), "DATABASE_URL": DSN},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        drop_schema("demo")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def _run_until_printed(script: Path, line: str) -> tuple[int, str, str]:
    """Run ``script``; send SIGINT once it has printed ``line``."""
    with subprocess.Popen(
        [sys.executable, script.name],
        cwd=script.parent,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        guard = threading.Timer(TIMEOUT, proc.kill)
        guard.start()
        try:
            assert proc.stdout is not None and proc.stderr is not None
            seen: list[str] = []
            for out in proc.stdout:
                seen.append(out)
                if out.rstrip("\n") == line:
                    proc.send_signal(signal.SIGINT)
                    break
            seen.append(proc.stdout.read())
            stderr = proc.stderr.read()
            return proc.wait(), "".join(seen), stderr
        finally:
            guard.cancel()
            if proc.poll() is None:
                proc.kill()
