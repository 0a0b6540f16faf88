# cython: language_level=3
"""The compiled core of pyapalis: tasks, attempts, ids, extensions, the deque.

One extension module assembled from one ``.pxi`` per part (the uvloop layout)
so every ``cdef`` call between parts stays a C call. The pure-Python twin,
``pyapalis/_twin/`` (one module per part), is the readable specification of
the same behaviour; both pass the same tests.

This module imports nothing from the trio layer: it owns data, not waiting.
"""

cimport cython
from libc.math cimport isnan, isinf
from libc.stdint cimport uint16_t, uint64_t
from libc.errno cimport EINTR, errno
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec

import datetime as _datetime
import os as _os
import weakref as _weakref

from pyapalis._errors import (
    AbortError,
    DeferredError,
    MissingDataError,
    RetryAfterError,
    TaskFailedError,
)
from pyapalis._status import Status

IMPLEMENTATION = "cython"

include "_time.pxi"
include "_ulid.pxi"
include "_attempt.pxi"
include "_extensions.pxi"
include "_task.pxi"
include "_deque.pxi"
include "_execution.pxi"
include "_invoke.pxi"
include "_spin.pxi"
