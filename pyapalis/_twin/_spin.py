"""The pure-Python twin of the compiled core's ``spin_until_readable`` (csrc/_spin.pxi).

Same contract; the difference is the GIL: here it is held between two polls,
so producer threads get it only at the interpreter's switch interval. The
``spin`` option of the embedding runtime is meant for the compiled core.
"""

from __future__ import annotations

import math
import select
import time
from collections.abc import Iterable

_MAX_FDS = 64


def spin_until_readable(fds: Iterable[int], seconds: float) -> bool:
    """Poll ``fds`` (at most 64) without sleeping for up to ``seconds``;
    True as soon as one is readable, False when the time is up."""
    poller = select.poll()
    for count, fd in enumerate(fds):
        if count == _MAX_FDS:
            raise ValueError(f"spin_until_readable: at most {_MAX_FDS} file descriptors")
        poller.register(fd, select.POLLIN)
    seconds = float(seconds)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"spin_until_readable: seconds must be >= 0, got {seconds!r}")
    deadline = time.monotonic() + seconds
    while True:
        if poller.poll(0):
            return True
        if time.monotonic() >= deadline:
            return False
