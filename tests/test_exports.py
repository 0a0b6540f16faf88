"""The public namespace: every public name is exported once, and nothing else is.

In the trio style: ``pyapalis/__init__.py`` only re-exports, ``__all__`` is the
whole public API, and a private module never leaks into it.
"""

from __future__ import annotations

import types

import pyapalis


def test_all_is_a_sorted_list_of_unique_strings() -> None:
    names = pyapalis.__all__
    assert isinstance(names, list)
    assert all(type(name) is str for name in names)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert duplicates == [], f"exported more than once: {duplicates}"
    assert names == sorted(names), "keep __all__ sorted"


def test_every_name_in_all_resolves() -> None:
    missing = [name for name in pyapalis.__all__ if not hasattr(pyapalis, name)]
    assert missing == []


def test_no_private_name_in_all() -> None:
    private = [name for name in pyapalis.__all__ if name.startswith("_")]
    assert private == []


def test_every_public_attribute_is_in_all() -> None:
    exported = set(pyapalis.__all__)
    # Submodules are bound as attributes once imported: private ones
    # (``pyapalis._core``...) start with "_", and the public subpackage
    # ``pyapalis.testing`` is reached by its dotted name, not re-exported.
    public = {
        name
        for name, value in vars(pyapalis).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - exported == set(), "public but not in __all__"
    assert exported - public == set(), "in __all__ but not a public attribute"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from pyapalis import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(pyapalis.__all__)


def test_the_only_public_subpackage_is_testing() -> None:
    import pyapalis.testing

    modules = {
        name
        for name, value in vars(pyapalis).items()
        if isinstance(value, types.ModuleType) and not name.startswith("_")
    }
    assert modules == {"testing"}
