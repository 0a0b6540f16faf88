"""Every backend's features table says what the backend really implements.

A backend's docstring carries a table of the capability protocols of
:mod:`pyapalis.backends._capabilities` (read by :func:`feature_table`). Here each row is
checked against the backend: ``supported`` or ``limited`` means the backend
(class and instance) satisfies the runtime-checkable protocol, with ``async``
methods where the protocol has them; ``not supported`` means it does not; and
every capability has exactly one row. Backends whose module is not present
are skipped, naming it.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyapalis.backends._capabilities import CAPABILITIES, feature_table


def _memory(tmp_path: Path) -> Any:
    from pyapalis.backends._memory._storage import MemoryStorage

    return MemoryStorage()


def _json(tmp_path: Path) -> Any:
    from pyapalis.backends._json._storage import JsonStorage

    return JsonStorage(tmp_path / "tasks.jsonl")


def _sqlite(tmp_path: Path) -> Any:
    from pyapalis.backends._sqlite._storage import SqliteStorage

    return SqliteStorage(tmp_path / "tasks.db")


def _postgres(tmp_path: Path) -> Any:
    from pyapalis.backends._postgres._storage import PostgresStorage

    return PostgresStorage("postgresql://localhost/unused")  # construction does no I/O


def _redis(tmp_path: Path) -> Any:
    from pyapalis.backends._redis._storage import RedisStorage

    return RedisStorage()  # no I/O until it is used


def _custom(tmp_path: Path) -> Any:
    from pyapalis.backends._custom import dequeue_backend

    return dequeue_backend(1.0)


# (module, class name, how to make an instance)
BACKENDS: list[tuple[str, str, Callable[[Path], Any]]] = [
    ("pyapalis.backends._memory._storage", "MemoryStorage", _memory),
    ("pyapalis.backends._json._storage", "JsonStorage", _json),
    ("pyapalis.backends._sqlite._storage", "SqliteStorage", _sqlite),
    ("pyapalis.backends._postgres._storage", "PostgresStorage", _postgres),
    ("pyapalis.backends._redis._storage", "RedisStorage", _redis),
    ("pyapalis.backends._custom", "CustomBackend", _custom),
]


def _backend_class(module_name: str, class_name: str) -> type:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        pytest.skip(f"{module_name} is not present: no {class_name} to check")
    backend: type = getattr(module, class_name)
    return backend


@pytest.fixture(params=BACKENDS, ids=[name for _, name, _ in BACKENDS])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[type, Any]]:
    """``(class, instance)`` of one backend; the instance is closed afterwards if it can be."""
    module_name, class_name, make = request.param
    cls = _backend_class(module_name, class_name)
    instance = make(tmp_path)
    assert isinstance(instance, cls)
    yield cls, instance
    close = getattr(instance, "close", None)
    if callable(close):
        close()


def _protocol_methods(protocol: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in vars(protocol).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }


def test_every_capability_has_exactly_one_row(backend: tuple[type, Any]) -> None:
    cls, _ = backend
    doc = cls.__doc__ or ""
    for name in CAPABILITIES:
        rows = re.findall(rf"^\s*{name}\s+(?:supported|limited|not supported)\b", doc, re.MULTILINE)
        assert len(rows) == 1, f"{cls.__name__}: {len(rows)} rows for {name} in its features table"
    assert set(feature_table(cls)) == set(CAPABILITIES)


def test_each_row_matches_the_protocol(backend: tuple[type, Any]) -> None:
    cls, instance = backend
    table = feature_table(cls)
    assert feature_table(instance) == table
    for name, support in table.items():
        protocol = CAPABILITIES[name]
        claimed = support != "not supported"
        for subject in (cls, instance):
            assert isinstance(subject, protocol) is claimed, (
                f"{cls.__name__}'s table says {name} is {support}, "
                f"but isinstance({subject!r}, {name}) is {not claimed}"
            )
        if not claimed:
            continue
        for method_name, declared in _protocol_methods(protocol).items():
            implemented = getattr(instance, method_name)
            assert callable(implemented), f"{cls.__name__}.{method_name} is not callable"
            assert inspect.iscoroutinefunction(implemented) is inspect.iscoroutinefunction(
                declared
            ), f"{cls.__name__}.{method_name} and {name}.{method_name} differ in being async"


def test_the_check_can_fail() -> None:
    """A table claiming what a class lacks (or denying what it has) is caught."""

    class Claims:
        """
        ======================  =============  =====
        capability              support        notes
        ======================  =============  =====
        FetchById               supported
        Vacuum                  not supported
        ======================  =============  =====
        """

        async def vacuum(self) -> int:
            return 0

    table = feature_table(Claims)
    assert table == {"FetchById": "supported", "Vacuum": "not supported"}
    mismatches = [
        name
        for name, support in table.items()
        if isinstance(Claims(), CAPABILITIES[name]) is (support == "not supported")
    ]
    assert mismatches == ["FetchById", "Vacuum"]
