"""Fail the import of pyapalis.testing clearly when its extra is not installed."""

import importlib.util


def _missing(module: str) -> ImportError:
    return ImportError(
        f"pyapalis.testing needs pytest and pytest-trio ({module} is missing): "
        "install the testing extra, pip install 'pyapalis[testing]'"
    )


for _module in ("pytest", "pytest_trio"):
    try:
        _found = importlib.util.find_spec(_module) is not None
    except ImportError:  # pragma: no cover - a broken parent package
        _found = False
    if not _found:
        raise _missing(_module)
