# TaskQueue: the storage of MemoryStorage. A ring buffer of ready tasks and a
# binary heap of scheduled ones, both plain C arrays of owned references.
#
# Waiting is not done here (this module knows nothing of trio): the trio layer
# parks consumers and passes in a clock. Every mutation of the arrays is a
# stretch of C code that neither allocates Python objects nor calls Python, so
# under the GIL it is atomic: producers on other threads may push while the
# trio thread pops.
#
# Queued tasks are taken off the cyclic garbage collector's lists while they
# wait (and put back when handed out): a backlog of millions of tasks would
# otherwise be rescanned by every full collection. While queued, a task is
# owned by the queue, so it cannot be part of unreachable garbage.

from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject


cdef extern from "Python.h":
    int PyObject_GC_IsTracked(object op)
    void PyObject_GC_Track(void* op)
    void PyObject_GC_UnTrack(void* op)


cdef struct _HeapEntry:
    double deadline
    uint64_t seq
    PyObject* task


cdef enum:
    _INITIAL_CAPACITY = 64
    # A pop checks the clock for due scheduled tasks at least this often.
    _RELEASE_EVERY = 64


cdef inline void _untrack(Task task) noexcept:
    if PyObject_GC_IsTracked(task):
        PyObject_GC_UnTrack(<void*>task)
    if PyObject_GC_IsTracked(task.parts):
        PyObject_GC_UnTrack(<void*>task.parts)


cdef inline void _retrack(Task task) noexcept:
    if not PyObject_GC_IsTracked(task):
        PyObject_GC_Track(<void*>task)
    if not PyObject_GC_IsTracked(task.parts):
        PyObject_GC_Track(<void*>task.parts)


@cython.final
@cython.freelist(16)
cdef class OneShotValue:
    """A value that resumes a parked task once: an ``outcome.Outcome`` for one use.

    The trio layer registers this class as a virtual ``outcome.Outcome`` and
    hands a task to a parked consumer with ``reschedule(consumer,
    OneShotValue(task))``. It does what ``outcome.Value`` does (``unwrap``,
    ``send``, ``asend``, each allowed once) for a fraction of the cost: the
    push-to-handler path creates and unwraps one per wake-up.
    """

    cdef object _value
    cdef bint _used

    def __cinit__(self, value):
        self._value = value

    cdef inline object _take(self):
        if self._used:
            raise RuntimeError("OneShotValue: this value was already used")
        self._used = True
        return self._value

    @property
    def value(self):
        """The held value."""
        return self._value

    def unwrap(self):
        """Return the value (once)."""
        return self._take()

    def send(self, gen):
        """Send the value into generator ``gen`` (once)."""
        return gen.send(self._take())

    async def asend(self, agen):
        """Send the value into async generator ``agen`` (once)."""
        return await agen.asend(self._take())

    def __repr__(self):
        return f"OneShotValue({self._value!r})"


@cython.final
cdef class TaskQueue:
    """Ready tasks in FIFO order plus scheduled tasks ordered by deadline.

    ``clock()`` returns the current time on the deadline's scale (the trio layer
    passes ``trio.current_time``). Scheduled tasks move to the back of the ready
    queue once due; a pop checks for due tasks when the ready queue is empty and
    every few dozen pops otherwise, so a due task is never stuck behind a
    continuous stream of new ones for long.
    """

    cdef PyObject** _ring
    cdef Py_ssize_t _head
    cdef Py_ssize_t _count
    cdef Py_ssize_t _capacity
    cdef _HeapEntry* _heap
    cdef Py_ssize_t _heap_len
    cdef Py_ssize_t _heap_capacity
    cdef uint64_t _seq
    cdef Py_ssize_t _since_release
    cdef object _clock
    # The hand-off to parked consumers (see connect_consumers).
    cdef object _waiters
    cdef object _pending
    cdef object _reschedule
    cdef object _owner
    cdef object _full_error
    cdef object _full_message
    cdef public unsigned long consumer_thread
    cdef public bint consumer_waiting
    cdef public bint wake_pending
    cdef readonly Py_ssize_t maxsize
    cdef readonly unsigned long long pushed_total
    cdef readonly unsigned long long popped_total

    def __cinit__(self, clock, Py_ssize_t maxsize=0):
        if not callable(clock):
            raise TypeError(f"TaskQueue: clock must be callable, got {type(clock).__name__}")
        if maxsize < 0:
            raise ValueError(f"TaskQueue: maxsize must be >= 0, got {maxsize}")
        self._clock = clock
        self.maxsize = maxsize
        self._ring = <PyObject**>PyMem_Malloc(_INITIAL_CAPACITY * sizeof(PyObject*))
        self._heap = <_HeapEntry*>PyMem_Malloc(_INITIAL_CAPACITY * sizeof(_HeapEntry))
        if self._ring is NULL or self._heap is NULL:
            raise MemoryError()
        self._capacity = _INITIAL_CAPACITY
        self._heap_capacity = _INITIAL_CAPACITY
        self._full_error = IndexError
        self._full_message = "TaskQueue is full"

    def __dealloc__(self):
        cdef Py_ssize_t i
        cdef PyObject* item
        if self._ring is not NULL:
            for i in range(self._count):
                item = self._ring[(self._head + i) % self._capacity]
                _retrack(<Task>item)
                Py_DECREF(<object>item)
            PyMem_Free(self._ring)
        if self._heap is not NULL:
            for i in range(self._heap_len):
                _retrack(<Task>self._heap[i].task)
                Py_DECREF(<object>self._heap[i].task)
            PyMem_Free(self._heap)

    # -- the ring of ready tasks ------------------------------------------

    cdef int _grow_ring(self) except -1:
        cdef Py_ssize_t new_capacity = self._capacity * 2
        cdef PyObject** ring = <PyObject**>PyMem_Malloc(new_capacity * sizeof(PyObject*))
        if ring is NULL:
            raise MemoryError()
        cdef Py_ssize_t i
        for i in range(self._count):
            ring[i] = self._ring[(self._head + i) % self._capacity]
        PyMem_Free(self._ring)
        self._ring = ring
        self._head = 0
        self._capacity = new_capacity
        return 0

    cdef void _shrink_ring(self) noexcept:
        # Give memory back after a large backlog drained; failure just keeps it.
        cdef Py_ssize_t new_capacity = self._capacity // 2
        cdef PyObject** ring = <PyObject**>PyMem_Malloc(new_capacity * sizeof(PyObject*))
        if ring is NULL:
            return
        cdef Py_ssize_t i
        for i in range(self._count):
            ring[i] = self._ring[(self._head + i) % self._capacity]
        PyMem_Free(self._ring)
        self._ring = ring
        self._head = 0
        self._capacity = new_capacity

    cdef int _append(self, Task task) except -1:
        if self._count == self._capacity:
            self._grow_ring()
        _untrack(task)
        Py_INCREF(task)
        self._ring[(self._head + self._count) % self._capacity] = <PyObject*>task
        self._count += 1
        self.pushed_total += 1
        return 0

    cdef int _appendleft(self, Task task) except -1:
        if self._count == self._capacity:
            self._grow_ring()
        _untrack(task)
        Py_INCREF(task)
        self._head = (self._head - 1 + self._capacity) % self._capacity
        self._ring[self._head] = <PyObject*>task
        self._count += 1
        return 0

    cdef Task _popleft(self):
        # Precondition: self._count > 0. The reference moves to the caller.
        cdef PyObject* item = self._ring[self._head]
        self._ring[self._head] = NULL
        self._head = (self._head + 1) % self._capacity
        self._count -= 1
        self.popped_total += 1
        if self._capacity > 4096 and self._count < self._capacity // 4:
            self._shrink_ring()
        cdef Task task = <Task>item
        Py_DECREF(task)        # drop the queue's reference; ``task`` holds one
        _retrack(task)
        return task

    # -- the heap of scheduled tasks --------------------------------------

    cdef inline bint _before(self, Py_ssize_t a, Py_ssize_t b) noexcept:
        cdef _HeapEntry* h = self._heap
        if h[a].deadline != h[b].deadline:
            return h[a].deadline < h[b].deadline
        return h[a].seq < h[b].seq

    cdef inline void _swap(self, Py_ssize_t a, Py_ssize_t b) noexcept:
        cdef _HeapEntry tmp = self._heap[a]
        self._heap[a] = self._heap[b]
        self._heap[b] = tmp

    cdef int _heap_push(self, Task task, double deadline) except -1:
        cdef _HeapEntry* grown
        if self._heap_len == self._heap_capacity:
            grown = <_HeapEntry*>PyMem_Realloc(
                self._heap, self._heap_capacity * 2 * sizeof(_HeapEntry))
            if grown is NULL:
                raise MemoryError()
            self._heap = grown
            self._heap_capacity *= 2
        _untrack(task)
        Py_INCREF(task)
        cdef Py_ssize_t i = self._heap_len
        self._heap[i].deadline = deadline
        self._heap[i].seq = self._seq
        self._heap[i].task = <PyObject*>task
        self._seq += 1
        self._heap_len += 1
        cdef Py_ssize_t parent
        while i > 0:
            parent = (i - 1) >> 1
            if not self._before(i, parent):
                break
            self._swap(i, parent)
            i = parent
        self.pushed_total += 1
        return 0

    cdef PyObject* _heap_pop(self) noexcept:
        # Precondition: self._heap_len > 0. Returns the owned reference.
        cdef PyObject* top = self._heap[0].task
        self._heap_len -= 1
        self._heap[0] = self._heap[self._heap_len]
        cdef Py_ssize_t i = 0, child, n = self._heap_len
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            if child + 1 < n and self._before(child + 1, child):
                child += 1
            if not self._before(child, i):
                break
            self._swap(i, child)
            i = child
        return top

    cdef Py_ssize_t _release_due(self, double now) except -1:
        """Move every scheduled task whose deadline has come to the ready ring."""
        cdef Py_ssize_t moved = 0
        cdef PyObject* item
        while self._heap_len > 0 and self._heap[0].deadline <= now:
            if self._count == self._capacity:
                self._grow_ring()
            item = self._heap_pop()
            # The reference moves from the heap to the ring as it is.
            self._ring[(self._head + self._count) % self._capacity] = item
            self._count += 1
            moved += 1
        self._since_release = 0
        return moved

    # -- the Python-facing API --------------------------------------------

    cdef inline bint _full(self) noexcept:
        return self.maxsize > 0 and self._count + self._heap_len >= self.maxsize

    def is_full(self):
        """True when ``maxsize`` is set and reached."""
        return self._full()

    def push(self, Task task not None, bint force=False):
        """Append a ready task at the back; False (nothing queued) if full.

        ``force`` ignores ``maxsize``: a task coming back for a retry is never refused.
        """
        if self._full() and not force:
            return False
        self._append(task)
        return True

    def push_front(self, Task task not None):
        """Put a task back at the front (a task handed back unfinished)."""
        self._appendleft(task)

    def schedule(self, Task task not None, double deadline, bint force=False):
        """Hold ``task`` until ``clock() >= deadline``; False (nothing queued) if full."""
        if isnan(deadline):
            raise ValueError("schedule: deadline must not be NaN")
        if self._full() and not force:
            return False
        self._heap_push(task, deadline)
        return True

    def push_args(self, args):
        """Wrap ``args`` in a new task with a generated id and append it.

        Returns the id, or None (nothing queued) if the queue is full.
        """
        # Allocate first: allocation may run the GC and switch threads; the
        # check and the append after it are one uninterrupted C stretch.
        cdef Task task = _new_task(args)
        cdef TaskId task_id = _generate_task_id()
        task.parts._task_id = task_id
        if self._full():
            return None
        self._append(task)
        return task_id

    # -- the hand-off to parked consumers -----------------------------------

    def connect_consumers(self, waiters, pending, reschedule, owner,
                          full_error, str full_message not None):
        """Let :meth:`push_nowait` give a new task straight to a parked consumer.

        ``waiters`` is the owner's deque of parked consumers, oldest first.
        When ``consumer_waiting`` is set, a push made on ``consumer_thread``
        that finds its task alone in the queue (nothing scheduled, ``pending``
        empty) pops the oldest waiter and calls ``reschedule(waiter,
        OneShotValue(task))``; any other push with ``consumer_waiting`` set
        calls ``owner.wake()`` (the owner is a ``Waker``), unless it comes from another thread while
        ``wake_pending`` is set (the owner sets it when it sends a wake to
        ``consumer_thread``, and clears it there before it looks at the
        queue). ``owner`` is held weakly. A full queue makes
        :meth:`push_nowait` raise ``full_error(full_message)``.
        """
        if not callable(reschedule):
            raise TypeError("connect_consumers: reschedule must be callable")
        self._waiters = waiters
        self._pending = pending
        self._reschedule = reschedule
        self._owner = _weakref.ref(owner)
        self._full_error = full_error
        self._full_message = full_message

    def push_nowait(self, args):
        """``push_args``, then wake a parked consumer; raises when full.

        The producer's whole path in C when it runs on the consumers' thread
        and a consumer is parked: no Python frame but the wake itself (see
        :meth:`connect_consumers`).
        """
        cdef TaskId task_id = _generate_task_id()
        self._push_new(args, task_id)
        return task_id

    def push_new_nowait(self, args, TaskId task_id not None):
        """:meth:`push_nowait` under ``task_id``, a fresh id the caller generated.

        The caller can file the id (say, with a future waiting for the task's
        outcome) before the task exists. Nothing checks that the id is new.
        """
        self._push_new(args, task_id)

    cdef int _push_new(self, args, TaskId task_id) except -1:
        # Allocate first, as push_args does: the check and the append are
        # one uninterrupted C stretch.
        cdef Task task = _new_task(args)
        task.parts._task_id = task_id
        if self._full():
            raise self._full_error(self._full_message)
        self._append(task)
        if self.consumer_waiting:
            self._wake_consumer()
        return 0

    cdef int _wake_consumer(self) except -1:
        cdef object waiters = self._waiters
        cdef object waiter
        cdef Task task
        if (self._count == 1 and self._heap_len == 0
                and self.consumer_thread == PyThread_get_thread_ident()
                and waiters is not None and waiters and not self._pending):
            waiter = waiters.popleft()
            task = self._popleft()
            self.consumer_waiting = len(waiters) > 0
            try:
                self._reschedule(waiter, OneShotValue(task))
            except BaseException:
                # Nobody took it: put both back as they were.
                self._appendleft(task)
                self.popped_total -= 1
                waiters.appendleft(waiter)
                self.consumer_waiting = True
                raise
            return 0
        if self.wake_pending and self.consumer_thread != PyThread_get_thread_ident():
            return 0  # a wake is on its way to the consumers' thread: it covers this push
        owner = None if self._owner is None else self._owner()
        if owner is not None:
            owner.wake()
        return 0

    def push_args_bulk(self, iterable):
        """``push_args`` for every item, ignoring ``maxsize``; returns the ids in order."""
        cdef list ids = []
        cdef Task task
        cdef TaskId task_id
        for args in iterable:
            task = _new_task(args)
            task_id = _generate_task_id()
            task.parts._task_id = task_id
            ids.append(task_id)
            self._append(task)
        return ids

    cpdef object pop(self):
        """The next ready task, or None. Due scheduled tasks are released first."""
        if self._heap_len > 0:
            self._since_release += 1
            if self._count == 0 or self._since_release >= _RELEASE_EVERY:
                self._release_due(self._clock())
        if self._count == 0:
            return None
        return self._popleft()

    def release_due(self, double now):
        """Release scheduled tasks due at ``now``; returns how many moved."""
        return self._release_due(now)

    def next_deadline(self):
        """The earliest scheduled deadline, or ``inf`` when nothing is scheduled."""
        if self._heap_len == 0:
            return float("inf")
        return self._heap[0].deadline

    def remove(self, task_id):
        """Take the queued task with this id out of the queue; None if absent.

        A linear scan: meant for management calls, not the hot path.
        """
        cdef Py_ssize_t i, j, index
        cdef PyObject* item
        for i in range(self._count):
            index = (self._head + i) % self._capacity
            item = self._ring[index]
            if (<Task>item).parts._task_id == task_id:
                for j in range(i, self._count - 1):
                    self._ring[(self._head + j) % self._capacity] = \
                        self._ring[(self._head + j + 1) % self._capacity]
                self._count -= 1
                task = <Task>item
                Py_DECREF(task)
                _retrack(task)
                return task
        for i in range(self._heap_len):
            item = self._heap[i].task
            if (<Task>item).parts._task_id == task_id:
                # Re-heapify after removing an arbitrary element.
                self._heap[i].deadline = -float("inf")
                while i > 0:
                    j = (i - 1) >> 1
                    self._swap(i, j)
                    i = j
                self._heap_pop()
                task = <Task>item
                Py_DECREF(task)
                _retrack(task)
                return task
        return None

    def tasks(self):
        """A snapshot list: ready tasks in order, then scheduled ones by deadline."""
        cdef list result = []
        cdef Py_ssize_t i
        for i in range(self._count):
            result.append(<object>self._ring[(self._head + i) % self._capacity])
        cdef list scheduled = []
        for i in range(self._heap_len):
            scheduled.append((self._heap[i].deadline, self._heap[i].seq,
                              <object>self._heap[i].task))
        scheduled.sort(key=_deadline_key)
        result.extend([entry[2] for entry in scheduled])
        return result

    @property
    def ready_count(self):
        """Tasks that can be handed out now."""
        return self._count

    @property
    def scheduled_count(self):
        """Tasks waiting for their deadline."""
        return self._heap_len

    def __len__(self):
        return self._count + self._heap_len

    def __bool__(self):
        return (self._count + self._heap_len) > 0


def _deadline_key(entry):
    return (entry[0], entry[1])
