"""Tools for testing code built on pyapalis, and backends written for it.

:class:`TestWorker` runs a handler against a backend one execution at a time.
``pyapalis.testing.conformance`` is the suite every backend passes; see
:class:`BackendConformance`; :class:`SharedBackendConformance` adds the cases
of backends shared by several processes (worker processes, SIGKILL, leases).
:class:`WallClock` makes ``time.time()`` follow trio's virtual clock. Importing
this package declares ``trio.testing.MockClock`` a virtual clock to the
backends (blocking work then stays on the trio thread: see
``pyapalis.backends._kit._clock.VirtualClock``). This
package needs pytest and pytest-trio: ``pip install 'pyapalis[testing]'``.
"""

from . import (
    _requirements,  # noqa: F401  (first: names the extra if pytest is missing)
    _virtual,  # noqa: F401  (declares trio's MockClock a virtual clock)
)
from ._shared import SharedBackendConformance as SharedBackendConformance
from ._shared import SharedBackendHarness as SharedBackendHarness
from ._test_worker import TestWorker as TestWorker
from ._wall_clock import WallClock as WallClock
from .conformance import BackendConformance as BackendConformance
from .conformance import BackendHarness as BackendHarness

__all__ = [
    "BackendConformance",
    "BackendHarness",
    "SharedBackendConformance",
    "SharedBackendHarness",
    "TestWorker",
    "WallClock",
]
