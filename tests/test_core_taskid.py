"""TaskId: value identity for given ids, time-ordered ULIDs for generated ones."""

from __future__ import annotations

import copy
import itertools
import math
import re
import time
from types import ModuleType

import pytest
from _bad_input import raised

from pyapalis import Status

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_RE = re.compile(r"\A[0-7][0-9A-HJKMNP-TV-Z]{25}\Z")
SPEC_EXAMPLE = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # the example of the ULID specification


def decode(text: str) -> int:
    """A reference Crockford base32 decoder, independent of the cores."""
    value = 0
    for char in text:
        value = value * 32 + CROCKFORD.index(char)
    return value


# -- ids given as text -----------------------------------------------------------


def test_str_and_repr_give_the_value(core: ModuleType) -> None:
    task_id = core.TaskId("task-123")
    assert str(task_id) == "task-123"
    assert repr(task_id) == "TaskId('task-123')"


def test_equality_and_hash_by_value(core: ModuleType) -> None:
    a, b, c = core.TaskId("task-123"), core.TaskId("task-123"), core.TaskId("task-124")
    assert a == b
    assert (a != b) is False
    assert hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    assert {a: 1}[b] == 1


def test_not_equal_to_its_string(core: ModuleType) -> None:
    task_id = core.TaskId("task-123")
    assert task_id != "task-123"
    assert "task-123" != task_id  # noqa: SIM300 - the reflected comparison is the point
    assert task_id != None  # noqa: E711


def test_copy_constructor(core: ModuleType) -> None:
    original = core.TaskId("task-123")
    assert core.TaskId(original) == original
    assert str(core.TaskId(original)) == "task-123"
    generated = core.TaskId.generate()
    again = core.TaskId(generated)
    assert again == generated
    assert hash(again) == hash(generated)
    assert str(again) == str(generated)


def test_copy_module_keeps_the_value(core: ModuleType) -> None:
    for task_id in (core.TaskId("task-123"), core.TaskId.generate()):
        assert copy.copy(task_id) == task_id
        assert copy.deepcopy(task_id) == task_id
        assert str(copy.copy(task_id)) == str(task_id)


def test_str_subclass_is_kept_as_plain_text(core: ModuleType) -> None:
    class Shouty(str):
        def __str__(self) -> str:
            return "SHOUT"

    for value, text in [(Status.Done, "Done"), (Shouty("task-1"), "task-1")]:
        task_id = core.TaskId(value)
        assert str(task_id) == text
        assert type(str(task_id)) is str
        assert task_id == core.TaskId(text)
        assert hash(task_id) == hash(core.TaskId(text))
    assert core.TaskBuilder("x").id(Shouty("task-1")).build().task_id == core.TaskId("task-1")
    ulid = core.TaskId(Shouty(SPEC_EXAMPLE))
    assert ulid.is_ulid
    assert ulid == core.TaskId(SPEC_EXAMPLE)


def test_plain_text_is_not_a_ulid(core: ModuleType) -> None:
    task_id = core.TaskId("task-123")
    assert task_id.is_ulid is False
    assert task_id.timestamp is None


@pytest.mark.parametrize(
    "text",
    [
        SPEC_EXAMPLE.lower(),  # only the canonical upper-case form is parsed
        SPEC_EXAMPLE[:-1],  # 25 characters
        SPEC_EXAMPLE + "0",  # 27 characters
        "8" + SPEC_EXAMPLE[1:],  # more than 128 bits
        "Z" + SPEC_EXAMPLE[1:],
        SPEC_EXAMPLE[:-1] + "I",  # letters Crockford leaves out
        SPEC_EXAMPLE[:-1] + "L",
        SPEC_EXAMPLE[:-1] + "O",
        SPEC_EXAMPLE[:-1] + "U",
        SPEC_EXAMPLE[:-1] + "-",
        SPEC_EXAMPLE[:-1] + "\u00e9",
        SPEC_EXAMPLE[:-1] + "\U0001f600",
    ],
)
def test_text_that_is_not_a_canonical_ulid(core: ModuleType, text: str) -> None:
    task_id = core.TaskId(text)
    assert task_id.is_ulid is False
    assert task_id.timestamp is None
    assert str(task_id) == text
    assert task_id == core.TaskId(text)
    assert task_id != core.TaskId(SPEC_EXAMPLE)


@pytest.mark.parametrize(
    "text", [SPEC_EXAMPLE, "00000000000000000000000000", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"]
)
def test_canonical_ulid_text_is_parsed(core: ModuleType, text: str) -> None:
    task_id = core.TaskId(text)
    assert task_id.is_ulid is True
    assert str(task_id) == text
    assert task_id.timestamp == (decode(text) >> 80) / 1000.0


def test_spec_example_timestamp(core: ModuleType) -> None:
    assert core.TaskId(SPEC_EXAMPLE).timestamp == 1469922850.259


BAD: list[tuple[str, object, type[Exception], str]] = [
    ("none", None, TypeError, "TaskId: expected str, got NoneType None"),
    ("int", 123, TypeError, "TaskId: expected str, got int 123"),
    ("bytes", b"abc", TypeError, "TaskId: expected str, got bytes b'abc'"),
    ("bool", True, TypeError, "TaskId: expected str, got bool True"),
    ("empty", "", ValueError, "TaskId: value must be a non-empty string"),
]


BAD_PARAMS = [pytest.param(*case[1:], id=case[0]) for case in BAD]


@pytest.mark.parametrize(("value", "error", "message"), BAD_PARAMS)
def test_bad_value(core: ModuleType, value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        core.TaskId(value)


@pytest.mark.parametrize(("value", "error", "message"), BAD_PARAMS)
def test_bad_value_same_on_both_cores(
    both_cores: tuple[ModuleType, ModuleType],
    value: object,
    error: type[Exception],
    message: str,
) -> None:
    outcomes = [raised(lambda m=module: m.TaskId(value)) for module in both_cores]
    assert outcomes[0] == outcomes[1] == (error, message)


def test_ordering_follows_the_string(core: ModuleType) -> None:
    a, b = core.TaskId("a"), core.TaskId("b")
    assert a < b
    assert a <= b
    assert b > a
    assert b >= a
    assert a <= core.TaskId("a")
    assert a >= core.TaskId("a")
    assert not (a < core.TaskId("a"))
    assert sorted([core.TaskId("b"), core.TaskId("c"), core.TaskId("a")]) == [
        core.TaskId("a"),
        core.TaskId("b"),
        core.TaskId("c"),
    ]


def test_ordering_mixes_ulids_and_text_by_string(core: ModuleType) -> None:
    texts = ["zzz", SPEC_EXAMPLE, "0", "01", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01ARZ3"]
    ids = [core.TaskId(text) for text in texts] + [core.TaskId.generate()]
    assert [str(task_id) for task_id in sorted(ids)] == sorted(str(task_id) for task_id in ids)


def test_no_ordering_against_other_types(core: ModuleType) -> None:
    with pytest.raises(TypeError):
        _ = core.TaskId("a") < "b"
    with pytest.raises(TypeError):
        _ = core.TaskId("a") >= 1


def test_ids_of_the_two_cores_are_distinct_types(
    both_cores: tuple[ModuleType, ModuleType],
) -> None:
    compiled, python = both_cores
    assert compiled.TaskId("a") != python.TaskId("a")


# -- generated ids ---------------------------------------------------------------


def test_generated_id_is_a_ulid(core: ModuleType) -> None:
    before = time.time()
    task_id = core.TaskId.generate()
    after = time.time()
    text = str(task_id)
    assert len(text) == 26
    assert ULID_RE.match(text), text
    assert set(text) <= set(CROCKFORD)
    assert task_id.is_ulid is True
    assert repr(task_id) == f"TaskId({text!r})"
    # The first 48 bits are UNIX milliseconds.
    assert task_id.timestamp == (decode(text) >> 80) / 1000.0
    assert math.floor(before * 1000) / 1000 - 0.001 <= task_id.timestamp <= after + 0.001


def test_generated_id_round_trips_through_its_text(core: ModuleType) -> None:
    generated = core.TaskId.generate()
    parsed = core.TaskId(str(generated))
    assert parsed == generated
    assert generated == parsed
    assert hash(parsed) == hash(generated)
    assert parsed.timestamp == generated.timestamp
    assert parsed.is_ulid
    assert not (parsed < generated or parsed > generated)
    assert {generated: "x"}[parsed] == "x"
    assert str(parsed) == str(generated)


def test_generated_ids_are_distinct_and_increasing(core: ModuleType) -> None:
    ids = [core.TaskId.generate() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(a < b for a, b in itertools.pairwise(ids))
    texts = [str(task_id) for task_id in ids]
    assert sorted(texts) == texts
    assert len(set(texts)) == len(texts)


def test_within_a_millisecond_the_random_part_counts_up(core: ModuleType) -> None:
    # Monotonic ULIDs: in one millisecond the 80-bit random part is incremented,
    # across milliseconds it is redrawn.
    values = [decode(str(core.TaskId.generate())) for _ in range(5000)]
    same_ms = [(a, b) for a, b in itertools.pairwise(values) if a >> 80 == b >> 80]
    assert same_ms, "5000 ids were expected to share a millisecond at least once"
    assert all(b == a + 1 for a, b in same_ms)
    first_of_each_ms = [b for a, b in itertools.pairwise(values) if a >> 80 != b >> 80]
    randoms = {value & ((1 << 80) - 1) for value in first_of_each_ms}
    assert len(randoms) == len(first_of_each_ms)


def test_generated_id_ordering_agrees_with_text(core: ModuleType) -> None:
    first, second = core.TaskId.generate(), core.TaskId.generate()
    assert first < second
    assert core.TaskId(str(first)) < second
    assert first < core.TaskId(str(second))
    assert str(first) < str(second)
    # against a text id, a generated id sorts by its text
    below, above = core.TaskId("0"), core.TaskId("zzz")
    assert below < first < above


def test_task_id_of_a_task(core: ModuleType) -> None:
    task = core.TaskBuilder("x").id("task-123").build()
    assert task.task_id == core.TaskId("task-123")
    assert task.task_id is task.parts.task_id
    assert core.Task("x").task_id is None


def test_parts_task_id_setter(core: ModuleType) -> None:
    parts = core.Task("x").parts
    parts.task_id = "abc"
    assert parts.task_id == core.TaskId("abc")
    assert type(parts.task_id) is core.TaskId
    generated = core.TaskId.generate()
    parts.task_id = generated
    assert parts.task_id is generated
    parts.task_id = None
    assert parts.task_id is None
    with pytest.raises(TypeError, match=re.escape("task_id: expected TaskId or str, got int 5")):
        parts.task_id = 5
    with pytest.raises(ValueError, match="TaskId: value must be a non-empty string"):
        parts.task_id = ""
    assert parts.task_id is None
    assert core.Parts(task_id="xyz").task_id == core.TaskId("xyz")
