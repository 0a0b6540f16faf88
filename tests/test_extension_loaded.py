"""Smoke test: the compiled core loaded and kept its C fields.

A ``.pxd`` placed beside ``csrc/_core.pyx`` is silently ignored by Cython; a
build that lost its declarations, or an install that quietly fell back to the
pure-Python twin, must fail here rather than pass every other test slowly.
"""

from __future__ import annotations

import gc
import importlib
import importlib.machinery
import os
import struct
import sys
from types import ModuleType

import pytest

import pyapalis
from pyapalis import Status

NO_EXTENSIONS = os.environ.get("PYAPALIS_NO_EXTENSIONS", "").strip().lower() in {
    "1",
    "true",
    "yes",
    "on",
}

pytestmark = pytest.mark.skipif(
    NO_EXTENSIONS, reason="PYAPALIS_NO_EXTENSIONS=1: the compiled core is disabled"
)

POINTER = struct.calcsize("P")
HEAD = object.__basicsize__  # PyObject_HEAD: refcount + type pointer
Py_TPFLAGS_HAVE_GC = 1 << 14


def _gc_header() -> int:
    """Bytes sys.getsizeof adds for a GC-tracked object (PyGC_Head)."""
    probe: list[int] = []
    return sys.getsizeof(probe) - probe.__sizeof__()


def _compiled() -> ModuleType:
    # Imported in the test, so a missing or broken build is a failure, not a collection error.
    return importlib.import_module("pyapalis._core")


def test_compiled_module_is_the_implementation() -> None:
    import pyapalis._implementation as implementation

    core = _compiled()
    assert core.IMPLEMENTATION == "cython"
    assert implementation.IMPLEMENTATION == "cython"
    assert implementation.core is core
    for name in ("Task", "Parts", "TaskBuilder", "TaskId", "Attempt", "Extensions"):
        assert getattr(pyapalis, name) is getattr(core, name), name
    assert pyapalis.Task is pyapalis._core.Task


def test_compiled_module_is_a_binary() -> None:
    core = _compiled()
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    assert core.__file__ is not None
    assert core.__file__.endswith(suffixes), core.__file__
    assert core.__file__.endswith((".so", ".pyd"))
    assert isinstance(core.__loader__, importlib.machinery.ExtensionFileLoader)
    # A cdef class is a static C type whose methods are compiled functions.
    assert not hasattr(core.Task, "__slots__")
    assert type(core.Task.clone).__name__ in {"cython_function_or_method", "method_descriptor"}


@pytest.mark.parametrize(
    ("name", "c_fields"),
    [
        # args, parts
        ("Task", 2 * POINTER),
        # task_id, data, attempt, ctx, status (objects); run_at, timeout (double);
        # priority (long long); max_attempts (int, padded to 8)
        ("Parts", 5 * POINTER + 8 + 8 + 8 + 8),
        # hi, lo (uint64); text (object); is_ulid (bint, padded to 8)
        ("TaskId", 8 + 8 + POINTER + 8),
        # count (long long)
        ("Attempt", 8),
        # the dict, allocated on the first insert
        ("Extensions", POINTER),
    ],
)
def test_compiled_objects_have_their_c_fields(name: str, c_fields: int) -> None:
    core = _compiled()
    cls = getattr(core, name)
    instance = {
        "Task": lambda: core.Task("x"),
        "Parts": lambda: core.Task("x").parts,
        "TaskId": lambda: core.TaskId.generate(),
        "Attempt": lambda: core.Attempt(),
        "Extensions": lambda: core.Extensions(),
    }[name]()
    expected = HEAD + c_fields
    assert cls.__basicsize__ == expected
    assert cls.__itemsize__ == 0
    assert instance.__sizeof__() == expected
    gc_type = bool(cls.__flags__ & Py_TPFLAGS_HAVE_GC)
    assert sys.getsizeof(instance) == expected + (_gc_header() if gc_type else 0)
    # No instance dict and no weakref slot: the fields are the C struct, nothing more.
    assert cls.__dictoffset__ == 0
    assert cls.__weakrefoffset__ == 0
    assert not hasattr(instance, "__dict__")


def test_leaf_objects_stay_out_of_the_cycle_collector() -> None:
    # TaskId and Attempt hold no references that could form a cycle; keeping them
    # out of the GC is what makes millions of ids cheap.
    core = _compiled()
    for instance in (core.TaskId.generate(), core.TaskId("a"), core.Attempt(3)):
        assert not type(instance).__flags__ & Py_TPFLAGS_HAVE_GC
        assert not gc.is_tracked(instance)


def test_compiled_task_rejects_unknown_attributes() -> None:
    core = _compiled()
    task = core.Task("x")
    with pytest.raises(AttributeError):
        task.not_a_field = 1
    with pytest.raises(AttributeError):
        task.parts.not_a_field = 1
    with pytest.raises(AttributeError):
        core.TaskId("a").not_a_field = 1
    with pytest.raises(AttributeError):
        core.Attempt().not_a_field = 1
    with pytest.raises(AttributeError):
        core.Extensions().not_a_field = 1
    # ``parts`` is read-only (``cdef readonly``); ``args`` is writable.
    with pytest.raises(AttributeError):
        task.parts = core.Task("y").parts
    task.args = "y"
    assert task.args == "y"


def test_compiled_parts_fields_readable_with_defaults() -> None:
    core = _compiled()
    parts = core.Task("x").parts
    assert parts.task_id is None
    assert isinstance(parts.data, core.Extensions)
    assert len(parts.data) == 0
    assert isinstance(parts.attempt, core.Attempt)
    assert parts.attempt.current() == 0
    assert parts.ctx is None
    assert parts.status is Status.Pending
    assert isinstance(parts.run_at, float)
    assert parts.run_at > 1_600_000_000
    assert parts.max_attempts is None
    assert parts.timeout is None
    assert parts.priority == 0
    assert type(parts.priority) is int
