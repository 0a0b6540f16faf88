# Extensions: a map keyed by the type of the value it holds (apalis's
# http::Extensions). The dict is allocated on the first insert, so the many
# tasks that carry no extra data pay for an empty slot only.


@cython.final
cdef class Extensions:
    """A map with at most one value per type: ``ext.insert(Db())``, ``ext.get(Db)``."""

    cdef dict _map

    def __init__(self, values=()):
        for value in values:
            _extensions_insert(self, value)

    def insert(self, value):
        """Store ``value`` under ``type(value)``; returns the value it replaced or None."""
        return _extensions_insert(self, value)

    def get(self, key):
        """The value stored for type ``key``, or None."""
        _check_key(key, "get")
        if self._map is None:
            return None
        return self._map.get(key)

    def get_checked(self, key):
        """The value stored for type ``key``; raises :class:`MissingDataError`."""
        _check_key(key, "get_checked")
        if self._map is not None:
            value = self._map.get(key, _MISSING)
            if value is not _MISSING:
                return value
        raise MissingDataError(key)

    def remove(self, key):
        """Remove and return the value for type ``key``, or None if absent."""
        _check_key(key, "remove")
        if self._map is None:
            return None
        return self._map.pop(key, None)

    def __contains__(self, key):
        return self._map is not None and key in self._map

    def __len__(self):
        return 0 if self._map is None else len(self._map)

    def __bool__(self):
        return self._map is not None and len(self._map) > 0

    def __iter__(self):
        """The stored values."""
        if self._map is None:
            return iter(())
        return iter(list(self._map.values()))

    def types(self):
        """The types that have a value, in insertion order."""
        return [] if self._map is None else list(self._map)

    def clear(self):
        """Remove every value."""
        self._map = None

    def extend(self, other):
        """Insert every value of ``other``; on a shared type ``other`` wins."""
        if not isinstance(other, Extensions):
            raise TypeError(
                f"Extensions.extend: expected Extensions, got {type(other).__name__}"
            )
        cdef Extensions source = <Extensions>other
        if source._map:
            if self._map is None:
                self._map = {}
            self._map.update(source._map)

    def copy(self):
        """A shallow copy: a new map holding the same values."""
        return _copy_extensions(self)

    def __eq__(self, other):
        if not isinstance(other, Extensions):
            return NotImplemented
        return dict(self._map or {}) == dict((<Extensions>other)._map or {})

    def __ne__(self, other):
        result = self.__eq__(other)
        if result is NotImplemented:
            return result
        return not result

    __hash__ = None

    def __repr__(self):
        values = ", ".join(repr(v) for v in (self._map or {}).values())
        return f"Extensions([{values}])"


cdef object _MISSING = object()


cdef inline int _check_key(object key, str method) except -1:
    if not isinstance(key, type):
        raise TypeError(
            f"Extensions.{method}: key must be a type, got {type(key).__name__} {key!r}"
        )
    return 0


cdef object _extensions_insert(Extensions self, object value):
    if self._map is None:
        self._map = {}
    key = type(value)
    old = self._map.get(key)
    self._map[key] = value
    return old


cdef Extensions _copy_extensions(Extensions self):
    cdef Extensions result = Extensions.__new__(Extensions)
    if self._map:
        result._map = dict(self._map)
    return result
