# TaskId and ULID generation.
#
# A generated id is a ULID: 48 bits of UNIX milliseconds then 80 random bits,
# written as 26 Crockford base32 characters. It is kept as two 64-bit integers
# and turned into text only when somebody asks (``str(id)``), which is what
# makes generation cheap. Ids built from text keep the text; text that is a
# canonical ULID is also parsed, so the two forms of one id compare equal.

cdef str _CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
cdef const char* _ENCODE = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
cdef signed char _DECODE[128]


cdef void _init_decode_table() noexcept:
    cdef int i
    for i in range(128):
        _DECODE[i] = -1
    for i in range(32):
        _DECODE[<unsigned char>_ENCODE[i]] = i


_init_decode_table()


# Generator state. Every access happens with the GIL held and without a
# Python call in between, so concurrent threads cannot interleave inside it.
cdef uint64_t _rng_state = 0
cdef uint64_t _last_ms = 0
cdef uint16_t _rand_hi = 0
cdef uint64_t _rand_lo = 0


cdef inline uint64_t _splitmix64() noexcept:
    """A fast 64-bit generator; seeded from the OS, re-seeded after fork()."""
    global _rng_state
    _rng_state += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = _rng_state
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


def _reseed() -> None:
    """Draw fresh seed bits from the OS (also run in a child after ``fork``).

    Without this a forked child would repeat its parent's random bits, and two
    processes sharing one store could mint the same id in the same millisecond.
    """
    global _rng_state, _last_ms
    _rng_state = int.from_bytes(_os.urandom(8), "little")
    _last_ms = 0


_reseed()
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_reseed)


cdef inline uint64_t _now_ms() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <uint64_t>ts.tv_sec * 1000ULL + <uint64_t>(ts.tv_nsec // 1000000)


cdef inline void _next_ulid(uint64_t* hi, uint64_t* lo) noexcept:
    """The next id: time-ordered, and strictly increasing within a process.

    Within one millisecond (or if the wall clock steps back) the 80-bit random
    part is incremented instead of redrawn, so ids still sort in creation order.
    """
    global _last_ms, _rand_hi, _rand_lo
    cdef uint64_t ms = _now_ms()
    if ms > _last_ms:
        _last_ms = ms
        _rand_lo = _splitmix64()
        _rand_hi = <uint16_t>(_splitmix64() >> 48)
    else:
        _rand_lo += 1
        if _rand_lo == 0:
            _rand_hi += 1
            if _rand_hi == 0:
                # 2^80 ids in one millisecond: borrow the next millisecond.
                _last_ms += 1
                _rand_lo = _splitmix64()
                _rand_hi = <uint16_t>(_splitmix64() >> 49)
    hi[0] = (_last_ms << 16) | _rand_hi
    lo[0] = _rand_lo


cdef inline unsigned int _five_bits(uint64_t hi, uint64_t lo, int shift) noexcept:
    # Bits [shift, shift + 5) of the 128-bit number hi:lo.
    if shift >= 64:
        return <unsigned int>((hi >> (shift - 64)) & 31)
    if shift <= 59:
        return <unsigned int>((lo >> shift) & 31)
    return <unsigned int>(((lo >> shift) | (hi << (64 - shift))) & 31)


cdef str _encode_ulid(uint64_t hi, uint64_t lo):
    cdef char buf[26]
    cdef int i
    for i in range(26):
        buf[i] = _ENCODE[_five_bits(hi, lo, 125 - 5 * i)]
    return buf[:26].decode("ascii")


cdef bint _parse_ulid(str text, uint64_t* hi, uint64_t* lo):
    """Parse a canonical (upper-case, 26-char) ULID; False if ``text`` is not one."""
    if len(text) != 26:
        return False
    cdef uint64_t h = 0, l = 0
    cdef Py_UCS4 ch
    cdef int i, digit
    for i in range(26):
        ch = text[i]
        if ch >= 128:
            return False
        digit = _DECODE[ch]
        if digit < 0 or (i == 0 and digit > 7):
            return False
        # Shift the 128-bit accumulator left by 5 and add the digit.
        h = (h << 5) | (l >> 59)
        l = (l << 5) | <uint64_t>digit
    hi[0] = h
    lo[0] = l
    return True


@cython.final
@cython.no_gc
@cython.freelist(64)
cdef class TaskId:
    """The identity of a task.

    ``TaskId("task-123")`` wraps any non-empty string; ``TaskId.generate()``
    mints a ULID (time-ordered, monotonic within a millisecond, unique across
    threads and forked processes). Equality, hashing and ordering follow the
    string value; ``str(task_id)`` gives it.
    """

    cdef uint64_t _hi
    cdef uint64_t _lo
    cdef object _text      # str, or None until a generated id is first printed
    cdef bint _is_ulid

    def __init__(self, value):
        if isinstance(value, TaskId):
            other = <TaskId>value
            self._hi = other._hi
            self._lo = other._lo
            self._text = other._text
            self._is_ulid = other._is_ulid
            return
        if not isinstance(value, str):
            raise TypeError(f"TaskId: expected str, got {type(value).__name__} {value!r}")
        if not value:
            raise ValueError("TaskId: value must be a non-empty string")
        if type(value) is not str:
            # A str subclass (a StrEnum member...) is kept as its plain text.
            value = str.__str__(value)
        self._text = value
        self._is_ulid = _parse_ulid(<str>value, &self._hi, &self._lo)

    @staticmethod
    def generate():
        """A new ULID-backed id."""
        return _generate_task_id()

    @property
    def is_ulid(self):
        """True if the value is a canonical ULID (generated ids always are)."""
        return self._is_ulid

    @property
    def timestamp(self):
        """UNIX seconds encoded in a ULID id, or ``None`` for other ids."""
        if not self._is_ulid:
            return None
        return <double>(self._hi >> 16) / 1000.0

    def __str__(self):
        if self._text is None:
            self._text = _encode_ulid(self._hi, self._lo)
        return self._text

    def __repr__(self):
        return f"TaskId({str(self)!r})"

    def __hash__(self):
        cdef uint64_t h
        if self._is_ulid:
            h = self._hi * 0x9E3779B97F4A7C15ULL ^ self._lo
            h ^= h >> 29
            if <Py_hash_t>h == -1:
                return -2
            return <Py_hash_t>h
        return hash(self._text)

    def __richcmp__(self, other, int op):
        if not isinstance(other, TaskId):
            return NotImplemented
        cdef TaskId a = self, b = <TaskId>other
        cdef int c
        if a._is_ulid and b._is_ulid:
            # Base32 of a fixed width preserves numeric order, so comparing the
            # integers agrees with comparing the strings.
            if a._hi != b._hi:
                c = -1 if a._hi < b._hi else 1
            elif a._lo != b._lo:
                c = -1 if a._lo < b._lo else 1
            else:
                c = 0
        else:
            sa = str(a)
            sb = str(b)
            c = 0 if sa == sb else (-1 if sa < sb else 1)
        if op == 0:
            return c < 0
        if op == 1:
            return c <= 0
        if op == 2:
            return c == 0
        if op == 3:
            return c != 0
        if op == 4:
            return c > 0
        return c >= 0


cdef TaskId _generate_task_id():
    cdef TaskId tid = TaskId.__new__(TaskId)
    _next_ulid(&tid._hi, &tid._lo)
    tid._is_ulid = True
    return tid
