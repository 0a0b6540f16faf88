"""What the Redis tests share: the server they use, a namespace each, a private server.

The tests run against the local server (``PYAPALIS_TEST_REDIS``, default
``redis://127.0.0.1:6379/0``), each in a namespace of its own that it deletes
at the end (never FLUSHALL: the server is shared). Without a server they skip,
saying so; under ``CI=true`` they fail instead (``.ci/run`` starts the server).

Fault tests need a server they may restart: :class:`PrivateRedis` starts a
``redis-server`` of their own on a free port (nothing on disk).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from _optional import IN_CI, installed

REDIS_URL = os.environ.get("PYAPALIS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _ping(url: str, timeout: float = 0.5) -> str | None:
    """None if a Redis server answers PING at ``url``, else why not."""
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=timeout
        ) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = sock.recv(64)
    except OSError as error:
        return f"no Redis server answers at {url} ({error})"
    if not reply.startswith(b"+PONG"):
        return f"the server at {url} does not answer PING ({reply!r})"
    return None


def _why_not() -> str | None:
    if not installed("coredis"):
        return "coredis is not installed (pip install -e '.[redis]')"
    return _ping(REDIS_URL)


_REASON = _why_not()

REDIS_UNAVAILABLE = None if IN_CI else _REASON
"""Why the Redis tests skip (None: they run; always None in CI, where they must run)."""

needs_redis = pytest.mark.skipif(
    not IN_CI and _REASON is not None, reason=_REASON or "Redis is available"
)
"""Skip without a server (naming why); in CI never skip: a missing server fails the test."""


def new_namespace() -> str:
    """A namespace no other test uses."""
    return f"pyapalis-test-{uuid.uuid4().hex[:12]}"


async def drop_namespace(url: str, namespace: str) -> None:
    """Delete every key of ``namespace`` (the test's own keys, nothing else)."""
    import coredis

    async with coredis.Redis.from_url(url) as client:
        batch = [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)]
        for start in range(0, len(batch), 500):
            await client.delete(batch[start : start + 500])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of the test's own on a free port, that it may stop and restart."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if IN_CI:
                pytest.fail("redis-server is not installed (.ci/run installs it)")
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0
        while _ping(self.url, 0.2) is not None:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Kill the server (it keeps nothing) and start a fresh one on the same port."""
        self.stop()
        self.start()


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()
