"""Tools for testing code built on pyapalis, and backends written for it.

``pyapalis.testing.conformance`` is the suite every backend passes; see
:class:`BackendConformance`.
"""

from .conformance import BackendConformance as BackendConformance
from .conformance import BackendHarness as BackendHarness

__all__ = ["BackendConformance", "BackendHarness"]
