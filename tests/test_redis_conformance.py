"""RedisStorage passes the conformance suite of ``pyapalis.testing``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _redis_support import REDIS_URL, drop_namespace, needs_redis, new_namespace

from pyapalis import RedisStorage
from pyapalis.testing import (
    BackendConformance,
    BackendHarness,
    SharedBackendConformance,
    SharedBackendHarness,
)

pytestmark = needs_redis


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    name = new_namespace()
    try:
        yield name
    finally:
        await drop_namespace(REDIS_URL, name)


class TestRedisStorage(BackendConformance):
    @pytest.fixture
    def harness(self, namespace: str) -> BackendHarness:
        return BackendHarness(
            open=lambda: RedisStorage(REDIS_URL, namespace=namespace, queue="conformance"),
            close=lambda storage: storage.aclose(),
            crash=lambda storage: storage.crash(),
        )


class TestRedisStorageShared(SharedBackendConformance):
    @pytest.fixture
    def shared_harness(self, namespace: str) -> SharedBackendHarness:
        return SharedBackendHarness(url=f"{REDIS_URL}?namespace={namespace}&lease=1", lease=1.0)
