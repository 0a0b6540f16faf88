"""The public namespaces: each exports what its ``__all__`` says, and nothing else.

In the trio style: public modules only re-export, ``__all__`` is each one's
whole API, grouped by topic, and a private module never leaks into it. The
surface is split by audience (``pyapalis``, ``pyapalis.backends``,
``pyapalis.layers``, ``pyapalis.typed``, ``pyapalis.embed``,
``pyapalis.testing``); a name may appear in its topic's module and, when many
programs need it, at the top level too — always as the same object.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

import pyapalis

PUBLIC_MODULES = [
    "pyapalis",
    "pyapalis.backends",
    "pyapalis.embed",
    "pyapalis.layers",
    "pyapalis.testing",
    "pyapalis.typed",
    "pyapalis.workflow",
]

# The names the project promises at the top level (the rest live in subpackages).
TOP_LEVEL_CONTRACT = {
    "Task",
    "Parts",
    "TaskBuilder",
    "TaskId",
    "Attempt",
    "Status",
    "Extensions",
    "MemoryStorage",
    "JsonStorage",
    "RedisStorage",
    "SqliteStorage",
    "open_backend",
    "CronStream",
    "Pipe",
    "WorkerBuilder",
    "Worker",
    "WorkerContext",
    "Event",
    "EventKind",
    "Monitor",
    "RetryPolicy",
    "BackoffMode",
    "Data",
    "Meta",
    "BackgroundTask",
    "CurrentTask",
    "TaskHash",
    "WorkerPool",
    "start_in_thread",
    "RuntimeStoppedError",
    "AbortError",
    "BuildError",
    "CodecError",
    "DeferredError",
    "MissingDataError",
    "PyapalisError",
    "RetryAfterError",
    "StorageError",
    "TaskError",
    "TaskFailedError",
    "TaskTimeoutError",
    "WorkerStateError",
}


@pytest.fixture(params=PUBLIC_MODULES)
def module(request: pytest.FixtureRequest) -> types.ModuleType:
    return importlib.import_module(request.param)


def test_all_is_a_list_of_unique_strings(module: types.ModuleType) -> None:
    names = module.__all__
    assert isinstance(names, list)
    assert all(type(name) is str for name in names)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert duplicates == [], f"exported more than once: {duplicates}"


def test_every_name_in_all_resolves(module: types.ModuleType) -> None:
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_no_private_name_in_all(module: types.ModuleType) -> None:
    private = [name for name in module.__all__ if name.startswith("_")]
    assert private == []


def test_every_public_attribute_is_in_all(module: types.ModuleType) -> None:
    exported = set(module.__all__)
    # Submodules are bound as attributes once imported: private ones start
    # with "_", public subpackages are reached by their dotted name.
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - exported == set(), "public but not in __all__"
    assert exported - public == set(), "in __all__ but not a public attribute"


def test_star_import_gives_exactly_all(module: types.ModuleType) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module.__name__} import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(module.__all__)


def test_public_modules_only_re_export(module: types.ModuleType) -> None:
    """Nothing is defined in a public module: each name comes from a private one."""
    for name in module.__all__:
        value = getattr(module, name)
        defined_in = getattr(value, "__module__", None)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert defined_in != module.__name__, f"{module.__name__}.{name} is defined there"


def test_the_top_level_keeps_its_contract() -> None:
    assert TOP_LEVEL_CONTRACT - set(pyapalis.__all__) == set()


def test_a_name_exported_twice_is_the_same_object() -> None:
    homes: dict[str, object] = {}
    for name in PUBLIC_MODULES:
        public = importlib.import_module(name)
        for exported in public.__all__:
            value = getattr(public, exported)
            if exported in homes:
                assert homes[exported] is value, f"{exported} differs in {name}"
            homes[exported] = value


def test_the_public_subpackages_are_the_documented_ones() -> None:
    found = {
        info.name
        for info in pkgutil.iter_modules(pyapalis.__path__, "pyapalis.")
        if not info.name.rpartition(".")[2].startswith("_")
    }
    assert found | {"pyapalis"} == set(PUBLIC_MODULES)
