"""A private PostgreSQL server for tests that stop and restart the server itself.

The shared test server (127.0.0.1:5432) serves every other test, and other test
runs on the machine may be using it: restarting it would break them. So a
test that needs a real server restart gets a server of its own — the same
PostgreSQL binaries, a fresh cluster (``initdb``) in a temporary directory, on
a free loopback port — and restarts that one (``pg_ctl restart -m fast``, or a
stop and a later start; each waits until it accepts sessions again). The server is stopped and
its directory removed when the test ends, whatever happened.

PostgreSQL refuses to run as root: as root, the server runs as ``postgres``
(through ``runuser``). Without the binaries, the test skips (fails in CI).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PrivateServer", "binaries", "private_server"]

_BOUND = 60.0  # a generous limit for the server to start or stop


def binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateServer:
    """A PostgreSQL server of one test: ``dsn``, :meth:`restart`, :meth:`wait_ready`."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self._bindir = bindir
        self._root = root
        self.data = root / "data"
        self.port = port
        self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self._bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(
            command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=_BOUND
        )

    def _ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self._root / "server.log"), *args)

    def _options(self) -> str:
        return (
            f"-c port={self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self._root}"
        )

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        self.start()

    def start(self) -> None:
        """Start the (stopped) server and wait until it accepts sessions."""
        self._ctl("-o", self._options(), "-w", "-t", str(int(_BOUND)), "start")
        self.wait_ready()

    def restart(self) -> None:
        """Restart the server (fast shutdown: sessions are ended) and wait until it is up."""
        self._ctl("-m", "fast", "-w", "-t", str(int(_BOUND)), "restart")
        self.wait_ready()

    def wait_ready(self) -> None:
        """Until the server accepts a session and answers a statement (bounded)."""
        import psycopg

        deadline = time.monotonic() + _BOUND
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=3) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop_fast(self) -> None:
        """Stop the server as an operator would (fast: sessions ended, data flushed)."""
        self._ctl("-m", "fast", "-w", "-t", str(int(_BOUND)), "stop")

    def stop(self) -> None:
        """Stop it at once, whatever its state (the end of the test)."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._ctl("-m", "immediate", "-w", "stop")

    def started_at(self) -> str:
        """When the running server started (``pg_postmaster_start_time()``)."""
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            row = conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()
        assert row is not None
        return str(row[0])

    def log(self) -> str:
        """The server's log (for a failure's message)."""
        path = self._root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def private_server() -> Iterator[PrivateServer]:
    """A fresh PostgreSQL server on a free loopback port, removed afterwards."""
    bindir = binaries()
    assert bindir is not None, "no PostgreSQL binaries (initdb, pg_ctl)"
    root = Path(tempfile.mkdtemp(prefix="pyapalis-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    server = PrivateServer(bindir, root, _free_port())
    try:
        server.init()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
