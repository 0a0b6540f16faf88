# A bounded spin on file descriptors with the GIL released (the embedding
# runtime's ``spin`` option, pyapalis/embed/_spin.py). Twin: pyapalis/_twin/_spin.py.

cdef extern from "<poll.h>" nogil:
    ctypedef unsigned long nfds_t
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, nfds_t nfds, int timeout)
    enum: POLLIN


cdef enum:
    _SPIN_MAX_FDS = 64


def spin_until_readable(fds, double seconds):
    """Poll ``fds`` (file descriptors, at most 64) without sleeping for up to
    ``seconds``; True as soon as one is readable, False when the time is up.

    The GIL is released for the whole spin, so producer threads run Python
    freely meanwhile; the calling thread stays on its CPU instead of parking
    in the kernel (which a wake-up from an idle CPU pays for).
    """
    cdef pollfd polled[_SPIN_MAX_FDS]
    cdef nfds_t count = 0
    cdef timespec now
    cdef double deadline
    cdef int ready = 0
    cdef int failed = 0
    for fd in fds:
        if count == _SPIN_MAX_FDS:
            raise ValueError(f"spin_until_readable: at most {_SPIN_MAX_FDS} file descriptors")
        polled[count].fd = fd
        polled[count].events = POLLIN
        polled[count].revents = 0
        count += 1
    if isnan(seconds) or seconds < 0:
        raise ValueError(f"spin_until_readable: seconds must be >= 0, got {seconds!r}")
    with nogil:
        clock_gettime(CLOCK_MONOTONIC, &now)
        deadline = now.tv_sec + now.tv_nsec * 1e-9 + seconds
        while True:
            ready = poll(polled, count, 0)
            if ready > 0:
                break
            if ready < 0 and errno != EINTR:
                failed = errno
                break
            clock_gettime(CLOCK_MONOTONIC, &now)
            if now.tv_sec + now.tv_nsec * 1e-9 >= deadline:
                break
    if failed:
        raise OSError(failed, f"spin_until_readable: poll failed: {_os.strerror(failed)}")
    return ready > 0
