"""Properties of the task core, checked with hypothesis and at scale on both cores."""

from __future__ import annotations

import math
import operator
import os
import re
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from pyapalis import MissingDataError, Status

# The ``core`` fixture only selects a module: reusing it across examples is safe.
FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_RE = re.compile(r"\A[0-7][0-9A-HJKMNP-TV-Z]{25}\Z")


def encode(value: int) -> str:
    """A reference Crockford base32 encoder of a 128-bit value, independent of the cores."""
    return "".join(CROCKFORD[(value >> (5 * (25 - i))) & 31] for i in range(26))


# -- Extensions behaves like a dict keyed by type ----------------------------------


class A:
    pass


class B:
    pass


class SubA(A):
    pass


class Marker:
    """Never inserted by the state machine: used to probe that copies are independent."""


KEYS = st.sampled_from([int, bool, str, bytes, float, type(None), tuple, A, B, SubA, Marker])
VALUES = st.one_of(
    st.integers(),
    st.booleans(),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.floats(allow_nan=False),
    st.none(),
    st.tuples(st.integers()),
    st.builds(A),
    st.builds(B),
    st.builds(SubA),
)


def extensions_machine(core: ModuleType) -> type[RuleBasedStateMachine]:
    class ExtensionsMachine(RuleBasedStateMachine):
        """Every operation on an Extensions agrees with a dict ``{type(v): v}``."""

        others = Bundle("others")

        def __init__(self) -> None:
            super().__init__()
            self.ext = core.Extensions()
            self.model: dict[type, object] = {}

        @rule(value=VALUES)
        def insert(self, value: object) -> None:
            old = self.model.get(type(value))
            self.model[type(value)] = value
            assert self.ext.insert(value) is old

        @rule(key=KEYS)
        def get(self, key: type) -> None:
            assert self.ext.get(key) is self.model.get(key)

        @rule(key=KEYS)
        def get_checked(self, key: type) -> None:
            if key in self.model:
                assert self.ext.get_checked(key) is self.model[key]
            else:
                message = f"the type for key `{key.__qualname__}` is not available"
                try:
                    self.ext.get_checked(key)
                except MissingDataError as error:
                    assert str(error) == message
                    assert error.key is key
                else:
                    raise AssertionError(f"get_checked({key}) did not raise")

        @rule(key=KEYS)
        def remove(self, key: type) -> None:
            assert self.ext.remove(key) is self.model.pop(key, None)

        @rule(key=KEYS)
        def contains(self, key: type) -> None:
            assert (key in self.ext) is (key in self.model)

        @rule()
        def clear(self) -> None:
            self.ext.clear()
            self.model.clear()

        @rule(target=others, values=st.lists(VALUES, max_size=5))
        def make_other(self, values: list[object]) -> Any:
            return core.Extensions(values)

        @rule(other=others)
        def extend(self, other: Any) -> None:
            before = (other.types(), list(other))
            self.ext.extend(other)
            self.model.update(zip(*before, strict=True))
            # extend leaves ``other`` as it was
            assert (other.types(), list(other)) == before

        @rule()
        def copy_is_independent(self) -> None:
            clone = self.ext.copy()
            assert clone == self.ext
            assert clone.types() == self.ext.types()
            assert all(a is b for a, b in zip(clone, self.ext, strict=True))
            clone.insert(Marker())
            clone.clear()
            assert Marker not in self.ext
            assert len(self.ext) == len(self.model)

        @rule()
        def continue_on_a_copy(self) -> None:
            self.ext = self.ext.copy()

        @invariant()
        def agrees_with_the_model(self) -> None:
            assert len(self.ext) == len(self.model)
            assert bool(self.ext) is bool(self.model)
            # same keys in the same (insertion) order, same value objects
            assert self.ext.types() == list(self.model)
            assert [id(value) for value in self.ext] == [id(v) for v in self.model.values()]
            assert self.ext == core.Extensions(self.model.values())

    return ExtensionsMachine


def test_extensions_is_a_dict_keyed_by_type(core: ModuleType) -> None:
    run_state_machine_as_test(
        extensions_machine(core),
        settings=settings(max_examples=150, stateful_step_count=40, deadline=None),
    )


# -- an Attempt is shared by a task and all its clones -----------------------------


@FIXTURE_OK
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["clone", "copy_parts", "increment"]), st.integers(0, 10**6)),
        max_size=60,
    )
)
def test_attempt_is_shared_by_every_clone(core: ModuleType, ops: list[tuple[str, int]]) -> None:
    tasks = [core.TaskBuilder("x").attempts(3).build()]
    count = 0
    for op, pick in ops:
        task = tasks[pick % len(tasks)]
        if op == "clone":
            tasks.append(task.clone())
        elif op == "copy_parts":
            tasks.append(core.Task.from_parts(task.args, task.parts.copy()))
        else:
            assert task.parts.attempt.increment() == count
            count += 1
        assert all(other.parts.attempt.current() == count for other in tasks)
    assert len({id(task.parts.attempt) for task in tasks}) == 1


@FIXTURE_OK
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["clone", "insert", "remove", "status", "meta"]),
            st.integers(0, 10**6),
            VALUES,
        ),
        max_size=40,
    )
)
def test_clones_never_share_data_status_or_metadata(
    core: ModuleType, ops: list[tuple[str, int, object]]
) -> None:
    # Each task is modelled by (data dict, status, ctx dict); a clone copies its model.
    tasks = [core.Task("x", {})]
    models: list[tuple[dict[type, object], list[Status], dict[str, object]]] = [
        ({}, [Status.Pending], {})
    ]
    for op, pick, value in ops:
        index = pick % len(tasks)
        task, (data, status, ctx) = tasks[index], models[index]
        if op == "clone":
            tasks.append(task.clone())
            models.append((dict(data), list(status), dict(ctx)))
        elif op == "insert":
            task.parts.data.insert(value)
            data[type(value)] = value
        elif op == "remove":
            task.parts.data.remove(type(value))
            data.pop(type(value), None)
        elif op == "status":
            new_status = list(Status)[pick % len(Status)]
            task.parts.status = new_status
            status[0] = new_status
        else:
            key = f"key-{pick % 5}"
            task.parts.ctx[key] = value
            ctx[key] = value
        for other, (other_data, other_status, other_ctx) in zip(tasks, models, strict=True):
            assert other.parts.data.types() == list(other_data)
            assert all(a is b for a, b in zip(other.parts.data, other_data.values(), strict=True))
            assert other.parts.status is other_status[0]
            assert other.parts.ctx.keys() == other_ctx.keys()
            assert all(other.parts.ctx[k] is v for k, v in other_ctx.items())


# -- TaskId: equality, hashing and order follow the text ---------------------------

ULID_TEXT = st.from_regex(r"\A[0-7][0-9A-HJKMNP-TV-Z]{25}\Z")
ID_TEXT = st.one_of(
    st.text(min_size=1, max_size=30),
    ULID_TEXT,
    ULID_TEXT.map(str.lower),
    st.text(alphabet=CROCKFORD, min_size=25, max_size=27),
)


@FIXTURE_OK
@given(texts=st.lists(ID_TEXT, min_size=1, max_size=12), generated=st.integers(0, 3))
def test_task_id_comparisons_follow_the_text(
    core: ModuleType, texts: list[str], generated: int
) -> None:
    ids = [core.TaskId(text) for text in texts]
    ids += [core.TaskId.generate() for _ in range(generated)]
    ids += [core.TaskId(str(task_id)) for task_id in ids[-generated:]] if generated else []
    for a in ids:
        for b in ids:
            sa, sb = str(a), str(b)
            assert (a == b) is (sa == sb)
            assert (a != b) is (sa != sb)
            assert (a < b) is (sa < sb)
            assert (a <= b) is (sa <= sb)
            assert (a > b) is (sa > sb)
            assert (a >= b) is (sa >= sb)
            if a == b:
                assert hash(a) == hash(b)
    assert [str(task_id) for task_id in sorted(ids)] == sorted(str(task_id) for task_id in ids)
    assert len(set(ids)) == len({str(task_id) for task_id in ids})


@FIXTURE_OK
@given(value=st.integers(0, 2**128 - 1), other=st.integers(0, 2**128 - 1))
def test_ulid_text_round_trip(core: ModuleType, value: int, other: int) -> None:
    text = encode(value)
    task_id = core.TaskId(text)
    assert task_id.is_ulid
    assert str(task_id) == text
    assert task_id.timestamp == (value >> 80) / 1000.0
    other_id = core.TaskId(encode(other))
    assert (task_id < other_id) is (value < other)
    assert (task_id == other_id) is (value == other)


# -- both cores agree on any input -------------------------------------------------

ANY_INPUT = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1]),
    st.just(10**400),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.sampled_from(list(Status)),
    st.timedeltas(),
)

STATIC_METHODS = ["attempts", "timeout", "priority", "run_at_timestamp", "id", "with_status"]
RELATIVE_METHODS = ["run_after", "run_in_seconds", "run_in_minutes", "run_in_hours"]
PARTS_FIELDS = ["run_at", "timeout", "max_attempts", "priority", "status", "task_id"]


def _outcome(call: Callable[[], object]) -> object:
    try:
        return ("ok", call())
    except (TypeError, ValueError, OverflowError) as error:
        return (type(error), str(error))


def _builder(core: ModuleType, method: str) -> Callable[[object], object]:
    """The bound builder method, on a builder with a fixed run_at so results compare."""
    return getattr(core.TaskBuilder("x").run_at_timestamp(0), method)


def _scheduled(core: ModuleType, method: str, value: object) -> float:
    return getattr(core.TaskBuilder("x"), method)(value).build().parts.run_at


def _built(builder: Any) -> str:
    task = builder.build()
    return f"{task.parts!r} {task.task_id!r}"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(value=ANY_INPUT)
def test_both_cores_agree_on_any_input(
    both_cores: tuple[ModuleType, ModuleType], value: object
) -> None:
    compiled, python = both_cores

    for method in STATIC_METHODS:
        results = [
            _outcome(lambda m=m, name=method: _built(_builder(m, name)(value)))
            for m in (compiled, python)
        ]
        assert results[0] == results[1], method

    for method in RELATIVE_METHODS:
        results = [
            _outcome(lambda m=m, name=method: _scheduled(m, name, value))
            for m in (compiled, python)
        ]
        if results[0][0] == results[1][0] == "ok":
            assert math.isclose(results[0][1], results[1][1], rel_tol=1e-12, abs_tol=1.0)
        else:
            assert results[0] == results[1], method

    for field in PARTS_FIELDS:
        results = []
        for m in (compiled, python):
            parts = m.Parts(run_at=0)
            results.append((_outcome(lambda p=parts, f=field: setattr(p, f, value)), repr(parts)))
        assert results[0] == results[1], field

    for cls in ("Attempt", "TaskId"):
        results = [
            _outcome(lambda m=m, c=cls: repr(getattr(m, c)(value))) for m in (compiled, python)
        ]
        assert results[0] == results[1], cls


# -- ULIDs at scale ----------------------------------------------------------------

# A million ids: about 0.3 s on the compiled core and 3 s on the pure-Python twin.
N = 1_000_000


def test_a_million_ulids_are_unique_and_sorted(core: ModuleType) -> None:
    generate = core.TaskId.generate
    ids = [generate() for _ in range(N)]
    assert len(set(ids)) == N
    # generated in creation order means already sorted, strictly
    assert all(map(operator.lt, ids, ids[1:]))
    texts = [str(task_id) for task_id in ids]
    assert len(set(texts)) == N
    assert sorted(texts) == texts
    assert all(ULID_RE.match(text) for text in texts[:: N // 1000])
    assert ids[0].timestamp <= ids[-1].timestamp


def test_ulids_from_four_threads_are_unique(core: ModuleType) -> None:
    per_thread, threads_count = 50_000, 4
    barrier = threading.Barrier(threads_count)
    results: list[list[object]] = [[] for _ in range(threads_count)]

    def work(index: int) -> None:
        generate = core.TaskId.generate
        barrier.wait()
        results[index] = [generate() for _ in range(per_thread)]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so their calls interleave
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    every_id = [task_id for result in results for task_id in result]
    assert len(every_id) == per_thread * threads_count
    assert len(set(every_id)) == len(every_id)
    assert len({str(task_id) for task_id in every_id}) == len(every_id)
    for result in results:
        # each thread still sees a strictly increasing sequence
        assert all(map(operator.lt, result, result[1:]))


def _ids_across_a_millisecond(generate: Callable[[], Any], count: int) -> list[str]:
    """At least ``count`` ids, spanning at least one change of millisecond.

    Crossing a millisecond forces a fresh draw of the random part, which is what a
    forked child that inherited its parent's generator state would repeat.
    """
    ids = [generate() for _ in range(count)]
    while ids[-1].timestamp == ids[0].timestamp:
        ids.append(generate())  # a busy loop of at most about one millisecond
    return [str(task_id) for task_id in ids]


def _random_part(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + CROCKFORD.index(char)
    return value & ((1 << 80) - 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_forked_child_does_not_repeat_the_parents_ids(core: ModuleType) -> None:
    count = 2000
    generate = core.TaskId.generate
    # Warm the generator up so there is state for a child to inherit.
    warm = [str(generate()) for _ in range(100)]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read_fd)
            payload = "\n".join(_ids_across_a_millisecond(generate, count)).encode("ascii")
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    parent_ids = _ids_across_a_millisecond(generate, count)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child_ids = payload.decode("ascii").split("\n")
    assert len(child_ids) >= count
    assert len(set(child_ids)) == len(child_ids)
    assert all(ULID_RE.match(text) for text in child_ids)
    assert child_ids == sorted(child_ids)
    assert set(child_ids).isdisjoint(parent_ids)
    assert set(child_ids).isdisjoint(warm)
    # Not even the random parts repeat: the child drew its own, it did not replay the
    # parent's sequence in other milliseconds.
    child_random = {_random_part(text) for text in child_ids}
    assert child_random.isdisjoint(_random_part(text) for text in parent_ids + warm)
    # the parent's own sequence went on increasing across the fork
    assert warm[-1] < parent_ids[0]
    assert parent_ids == sorted(parent_ids)
