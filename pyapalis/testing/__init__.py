"""Tools for testing code built on pyapalis, and backends written for it.

``pyapalis.testing.conformance`` is the suite every backend passes; see
:class:`BackendConformance`. :class:`WallClock` makes ``time.time()`` follow
trio's virtual clock.
"""

from ._wall_clock import WallClock as WallClock
from .conformance import BackendConformance as BackendConformance
from .conformance import BackendHarness as BackendHarness

__all__ = ["BackendConformance", "BackendHarness", "WallClock"]
