"""Helpers the asv suites share: choosing the implementation, draining a worker.

pyapalis picks its core once, at import (``pyapalis._implementation`` reads
``PYAPALIS_NO_EXTENSIONS``), and every module binds the chosen classes. A suite
parametrized over ``cython`` / ``python`` therefore imports pyapalis afresh
when the wanted implementation is not the loaded one: :func:`load_pyapalis`
puts the loaded ``pyapalis`` modules aside, sets the switch and imports again
(or puts back the set it had put aside: the compiled extension cannot be
imported twice, and it holds the exception classes of the set it was loaded
with). asv runs each benchmark in its own process, so the switch never leaks
into another benchmark; the suites never import pyapalis at module level, only
through this function.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

__all__ = ["IMPLEMENTATIONS", "load_pyapalis"]

IMPLEMENTATIONS = ["cython", "python"]
"""The ``implementation`` parameter of the suites: compiled core or pure-Python twin."""

_SWITCH = "PYAPALIS_NO_EXTENSIONS"

# The pyapalis modules of each implementation loaded so far, while put aside.
_put_aside: dict[str, dict[str, ModuleType]] = {}


def _pyapalis_modules() -> dict[str, ModuleType]:
    return {
        name: module
        for name, module in sys.modules.items()
        if (name == "pyapalis" or name.startswith("pyapalis.")) and name != "pyapalis._core"
    }


def load_pyapalis(implementation: str) -> ModuleType:
    """The ``pyapalis`` package running on ``implementation``.

    Raises NotImplementedError (asv reports the row as skipped) when the
    compiled core is wanted but not built.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"load_pyapalis: implementation must be one of {IMPLEMENTATIONS}, "
            f"got {implementation!r}"
        )
    current = sys.modules.get("pyapalis._implementation")
    if current is None or implementation != current.IMPLEMENTATION:
        loaded_modules = _pyapalis_modules()
        if current is not None:
            _put_aside[current.IMPLEMENTATION] = loaded_modules
        for name in loaded_modules:
            del sys.modules[name]
        if implementation == "python":
            os.environ[_SWITCH] = "1"
        else:
            os.environ.pop(_SWITCH, None)
        if implementation in _put_aside:
            sys.modules.update(_put_aside.pop(implementation))
        else:
            importlib.import_module("pyapalis")
    loaded = sys.modules["pyapalis._implementation"].IMPLEMENTATION
    if loaded != implementation:
        raise NotImplementedError(f"pyapalis runs on the {loaded} core here: {implementation} n/a")
    return sys.modules["pyapalis"]
