"""Declares trio's MockClock a virtual clock for the backends (see the kit's run clock).

Imported by :mod:`pyapalis.testing`: a test run that uses
``trio.testing.MockClock`` (pytest-trio's ``autojump_clock``) and imports the
testing package gets blocking backend work on the trio thread, so the autojump
clock never leaps while an fsync or a SQLite call is in a worker thread.
Production code never imports ``trio.testing``: it only reads the declaration.
"""

from __future__ import annotations

import trio.testing

from ..backends._kit._clock import VirtualClock

VirtualClock.register(trio.testing.MockClock)
