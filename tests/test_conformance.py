"""pyapalis's own backends pass the conformance suite shipped in ``pyapalis.testing``."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyapalis import MemoryStorage
from pyapalis._json_storage import JsonStorage
from pyapalis.testing import BackendConformance, BackendHarness


class TestMemoryStorage(BackendConformance):
    @pytest.fixture
    def harness(self) -> BackendHarness:
        storage = MemoryStorage()
        return BackendHarness(open=lambda: storage)


class TestJsonStorage(BackendConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> BackendHarness:
        path = tmp_path / "tasks.jsonl"

        def crash(storage: JsonStorage) -> None:
            # Closing the file without acking or handing anything back leaves
            # the journal exactly as a killed process would.
            storage.close()

        return BackendHarness(
            open=lambda: JsonStorage(path), close=lambda storage: storage.close(), crash=crash
        )


class TestJsonStorageSharedFile(BackendConformance):
    """A second typed queue in a file that also holds another queue's tasks."""

    @pytest.fixture
    def harness(self, tmp_path: Path) -> BackendHarness:
        path = tmp_path / "shared.jsonl"
        other = JsonStorage(path, queue="other")

        def open_emails() -> JsonStorage:
            return JsonStorage(path, queue="emails")

        def close(storage: JsonStorage) -> None:
            storage.close()

        def crash(storage: JsonStorage) -> None:
            storage.close()
            other.close()  # the last handle: the file is released, as at process exit

        return BackendHarness(open=open_emails, close=close, crash=crash)
