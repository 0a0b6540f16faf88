"""Markers for tests that need an optional extra (Prometheus, OpenTelemetry, peers).

Outside CI such a test skips, naming the extra to install. In CI (``CI=true``)
the extras are installed by ``.ci/run``, so the marker does nothing: a missing
library there makes the test fail instead of hiding behind a skip.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def installed(module: str) -> bool:
    """True when ``module`` (dotted names allowed) can be imported."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def needs(module: str, extra: str) -> pytest.MarkDecorator:
    """Skip unless ``module`` is installed (``pip install -e '.[extra]'``); never skip in CI."""
    return pytest.mark.skipif(
        not IN_CI and not installed(module),
        reason=f"{module} is not installed (pip install -e '.[{extra}]')",
    )
