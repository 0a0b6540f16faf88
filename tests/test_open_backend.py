"""``open_backend(url)``: one table of schemes, each backend imported when used."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pyapalis import JsonStorage, MemoryStorage, SqliteStorage, open_backend
from pyapalis.backends._open import SCHEMES


def test_memory() -> None:
    assert isinstance(open_backend("memory://"), MemoryStorage)


def test_json(tmp_path: Path) -> None:
    storage = open_backend(f"json://{tmp_path}/tasks.jsonl?queue=mail&lease=5")
    try:
        assert isinstance(storage, JsonStorage)
        assert storage.queue_name == "mail"
    finally:
        storage.close()


def test_sqlite_options_become_keyword_arguments(tmp_path: Path) -> None:
    storage = open_backend(f"sqlite://{tmp_path}/tasks.db?queue=mail&lease=2.5&synchronous=FULL")
    assert isinstance(storage, SqliteStorage)
    assert (storage.path, storage.queue_name, storage.lease) == (
        f"{tmp_path}/tasks.db",
        "mail",
        2.5,
    )
    assert not (tmp_path / "tasks.db").exists()  # construction does no I/O
    storage.close()


def test_a_relative_sqlite_path() -> None:
    storage = open_backend("sqlite://data/tasks.db")
    assert storage.path == "data/tasks.db"
    storage.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x", r"unknown scheme in 'ftp://x' \(known: memory://, json://, sqlite://"),
        ("sqlite:///tmp/x.db?colour=red", r"unknown option 'colour' for sqlite:// \(known: batch"),
        ("sqlite:///tmp/x.db?lease=-1", r"option lease='-1': must be a positive number"),
        ("sqlite:///tmp/x.db?lease=abc", r"option lease='abc'"),
        ("sqlite:///tmp/x.db?queue=a&queue=b", r"option 'queue' given twice"),
        ("sqlite://", r"names no file"),
        ("memory://?queue=a", r"unknown option 'queue' for memory:// \(known: none\)"),
    ],
)
def test_bad_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_backend(url)


def test_a_scheme_imports_its_backend_only_when_used() -> None:
    assert all(target.count(":") == 1 for target in SCHEMES.values())
    with pytest.raises(TypeError, match="url must be a str"):
        open_backend(None)  # type: ignore[arg-type]
    assert "pyapalis.backends._open" in sys.modules
