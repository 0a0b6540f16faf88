"""Extensions: a map holding at most one value per type, keyed by the value's type."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
from _bad_input import bad_input_tests

from pyapalis import MissingDataError, PyapalisError


class Db:
    def __init__(self, name: str = "db") -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Db({self.name!r})"


class SubDb(Db):
    pass


class Outer:
    class Inner:
        pass


def test_empty(core: ModuleType) -> None:
    ext = core.Extensions()
    assert len(ext) == 0
    assert not ext
    assert ext.get(Db) is None
    assert Db not in ext
    assert ext.types() == []
    assert list(ext) == []
    assert repr(ext) == "Extensions([])"


def test_insert_returns_the_replaced_value(core: ModuleType) -> None:
    ext = core.Extensions()
    first, second = Db("first"), Db("second")
    assert ext.insert(first) is None
    assert ext.insert(second) is first
    assert ext.get(Db) is second
    assert len(ext) == 1


def test_get_returns_the_stored_object(core: ModuleType) -> None:
    ext = core.Extensions()
    db = Db()
    ext.insert(db)
    ext.insert(42)
    ext.insert("text")
    assert ext.get(Db) is db
    assert ext.get(int) == 42
    assert ext.get(str) == "text"
    assert ext.get(float) is None
    assert len(ext) == 3
    assert ext


def test_keyed_by_the_exact_type(core: ModuleType) -> None:
    ext = core.Extensions()
    ext.insert(1)
    ext.insert(True)
    ext.insert(SubDb("sub"))
    # bool is a subclass of int, SubDb of Db: each is its own key.
    assert ext.get(int) == 1
    assert type(ext.get(int)) is int
    assert ext.get(bool) is True
    assert ext.get(Db) is None
    assert Db not in ext
    assert ext.get(SubDb).name == "sub"
    assert len(ext) == 3


def test_none_can_be_stored(core: ModuleType) -> None:
    ext = core.Extensions()
    assert ext.insert(None) is None
    assert type(None) in ext
    assert ext.get_checked(type(None)) is None
    assert len(ext) == 1


def test_get_checked(core: ModuleType) -> None:
    ext = core.Extensions([Db("x")])
    assert ext.get_checked(Db).name == "x"
    with pytest.raises(MissingDataError, match=r"^the type for key `int` is not available$"):
        ext.get_checked(int)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        (int, "int"),
        (Db, "Db"),
        (SubDb, "SubDb"),
        (Outer.Inner, "Outer.Inner"),
        (type(None), "NoneType"),
    ],
)
def test_missing_data_error_names_the_type(core: ModuleType, key: type, name: str) -> None:
    with pytest.raises(MissingDataError) as info:
        core.Extensions().get_checked(key)
    assert str(info.value) == f"the type for key `{name}` is not available"
    assert info.value.key is key
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value, PyapalisError)


def test_missing_data_error_after_remove(core: ModuleType) -> None:
    ext = core.Extensions([Db()])
    ext.remove(Db)
    with pytest.raises(MissingDataError, match="`Db`"):
        ext.get_checked(Db)


def test_remove(core: ModuleType) -> None:
    db = Db()
    ext = core.Extensions([db, 1])
    assert ext.remove(Db) is db
    assert Db not in ext
    assert ext.get(Db) is None
    assert len(ext) == 1
    assert ext.remove(Db) is None
    assert core.Extensions().remove(Db) is None
    assert ext.get(int) == 1


def test_contains(core: ModuleType) -> None:
    ext = core.Extensions([Db(), "s"])
    assert Db in ext
    assert str in ext
    assert int not in ext
    assert SubDb not in ext
    # Non-type keys are simply absent.
    assert "s" not in ext
    assert 1 not in ext


def test_clear(core: ModuleType) -> None:
    ext = core.Extensions([Db(), 1, "s"])
    ext.clear()
    assert len(ext) == 0
    assert not ext
    assert ext.get(Db) is None
    assert ext.types() == []
    assert ext.insert(2) is None
    assert len(ext) == 1


def test_constructor_takes_values_last_wins(core: ModuleType) -> None:
    ext = core.Extensions([Db("a"), 1, Db("b")])
    assert len(ext) == 2
    assert ext.get(Db).name == "b"
    assert core.Extensions(values=[1]).get(int) == 1
    assert core.Extensions(iter(["x"])).get(str) == "x"


def test_iteration_and_types_in_insertion_order(core: ModuleType) -> None:
    db = Db()
    ext = core.Extensions()
    ext.insert("s")
    ext.insert(db)
    ext.insert(1)
    ext.insert("t")  # replacing keeps the position, like a dict
    assert ext.types() == [str, Db, int]
    assert list(ext) == ["t", db, 1]
    ext.remove(Db)
    ext.insert(db)
    assert ext.types() == [str, int, Db]


def test_iteration_is_over_a_snapshot(core: ModuleType) -> None:
    ext = core.Extensions([1, "s"])
    seen = []
    for value in ext:
        seen.append(value)
        ext.insert(2.5)
    assert seen == [1, "s"]
    assert len(ext) == 3


def test_extend_other_wins(core: ModuleType) -> None:
    mine_db, theirs_db = Db("mine"), Db("theirs")
    mine = core.Extensions([mine_db, 1])
    theirs = core.Extensions([theirs_db, "s"])
    assert mine.extend(theirs) is None
    assert mine.get(Db) is theirs_db
    assert mine.get(int) == 1
    assert mine.get(str) == "s"
    assert len(mine) == 3
    # ``other`` is left as it was
    assert len(theirs) == 2
    assert theirs.get(Db) is theirs_db
    assert int not in theirs


def test_extend_with_empty_and_into_empty(core: ModuleType) -> None:
    ext = core.Extensions([1])
    ext.extend(core.Extensions())
    assert ext.types() == [int]
    empty = core.Extensions()
    empty.extend(ext)
    assert empty.get(int) == 1
    # the maps are independent afterwards
    empty.insert(2)
    assert ext.get(int) == 1


def test_extend_with_itself(core: ModuleType) -> None:
    ext = core.Extensions([1, "s"])
    ext.extend(ext)
    assert ext.types() == [int, str]


def test_copy_is_shallow_and_independent(core: ModuleType) -> None:
    db = Db()
    ext = core.Extensions([db, 1])
    clone = ext.copy()
    assert type(clone) is core.Extensions
    assert clone is not ext
    assert clone.get(Db) is db  # the values are shared
    assert clone == ext
    clone.insert(Db("other"))
    clone.insert("s")
    clone.remove(int)
    assert ext.get(Db) is db
    assert str not in ext
    assert ext.get(int) == 1
    ext.clear()
    assert len(clone) == 2
    assert len(core.Extensions().copy()) == 0


def test_equality(core: ModuleType) -> None:
    assert core.Extensions([1, "s"]) == core.Extensions(["s", 1])
    assert core.Extensions([1]) != core.Extensions([2])
    assert core.Extensions([1]) != core.Extensions([1, "s"])
    assert core.Extensions() == core.Extensions()
    emptied = core.Extensions([1])
    emptied.remove(int)
    assert emptied == core.Extensions()
    assert core.Extensions([1]) != {int: 1}
    assert core.Extensions([1]) != [1]


def test_not_hashable(core: ModuleType) -> None:
    with pytest.raises(TypeError, match="unhashable"):
        hash(core.Extensions())


def test_repr_lists_the_values(core: ModuleType) -> None:
    assert repr(core.Extensions([1, "s", Db("x")])) == "Extensions([1, 's', Db('x')])"


BAD: list[tuple[str, Callable[[ModuleType], object], type[Exception], str]] = [
    (
        "get str",
        lambda m: m.Extensions().get("int"),
        TypeError,
        "Extensions.get: key must be a type, got str 'int'",
    ),
    (
        "get instance",
        lambda m: m.Extensions([1]).get(1),
        TypeError,
        "Extensions.get: key must be a type, got int 1",
    ),
    (
        "get_checked none",
        lambda m: m.Extensions().get_checked(None),
        TypeError,
        "Extensions.get_checked: key must be a type, got NoneType None",
    ),
    (
        "remove str",
        lambda m: m.Extensions([1]).remove("int"),
        TypeError,
        "Extensions.remove: key must be a type, got str 'int'",
    ),
    (
        "extend dict",
        lambda m: m.Extensions().extend({int: 1}),
        TypeError,
        "Extensions.extend: expected Extensions, got dict",
    ),
    (
        "extend list",
        lambda m: m.Extensions().extend([1]),
        TypeError,
        "Extensions.extend: expected Extensions, got list",
    ),
    (
        "missing",
        lambda m: m.Extensions(["s"]).get_checked(Db),
        MissingDataError,
        "the type for key `Db` is not available",
    ),
    (
        "constructor not iterable",
        lambda m: m.Extensions(5),
        TypeError,
        "'int' object is not iterable",
    ),
]


test_bad_input, test_bad_input_same_on_both_cores = bad_input_tests(BAD)


def test_bad_key_leaves_the_map_unchanged(core: ModuleType) -> None:
    ext = core.Extensions([1])
    with pytest.raises(TypeError):
        ext.remove(1)
    assert ext.get(int) == 1


def test_extensions_of_the_other_core_are_rejected(
    both_cores: tuple[ModuleType, ModuleType],
) -> None:
    compiled, python = both_cores
    message = r"^Extensions\.extend: expected Extensions, got Extensions$"
    with pytest.raises(TypeError, match=message):
        compiled.Extensions().extend(python.Extensions([1]))
    with pytest.raises(TypeError, match=message):
        python.Extensions().extend(compiled.Extensions([1]))


# -- the task's data ---------------------------------------------------------------


def test_task_data_is_an_empty_extensions(core: ModuleType) -> None:
    parts = core.Task("x").parts
    assert type(parts.data) is core.Extensions
    assert len(parts.data) == 0
    # the same map on every read, so inserts stick
    assert parts.data is parts.data
    parts.data.insert(Db())
    assert Db in parts.data


def test_task_data_setter(core: ModuleType) -> None:
    parts = core.Task("x").parts
    ext = core.Extensions([1])
    parts.data = ext
    assert parts.data is ext
    with pytest.raises(TypeError, match=r"^data: expected Extensions, got dict$"):
        parts.data = {int: 1}
    assert parts.data is ext
    assert core.Parts(data=ext).data is ext
    with pytest.raises(TypeError, match=r"^data: expected Extensions, got list$"):
        core.Parts(data=[1])
