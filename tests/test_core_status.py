"""Status: a str-valued Enum whose values equal the names, and how tasks take it."""

from __future__ import annotations

import enum
import json
import re
from types import ModuleType

import pytest

from pyapalis import Status

NAMES = ["Pending", "Queued", "Running", "Done", "Failed", "Killed"]
UNKNOWN = "unknown Status {!r}; expected one of: " + ", ".join(NAMES)


def test_members_in_lifecycle_order() -> None:
    assert [member.name for member in Status] == NAMES
    assert len(Status) == 6


@pytest.mark.parametrize("name", NAMES)
def test_value_is_the_name(name: str) -> None:
    member = Status[name]
    assert member.value == name
    assert Status(name) is member
    assert str(member) == name
    assert f"{member}" == name
    assert format(member, "") == name
    assert member == name
    assert isinstance(member, str)
    assert hash(member) == hash(name)


def test_status_is_a_str_enum() -> None:
    assert issubclass(Status, enum.StrEnum)
    assert str(Status.Done) == "Done"
    assert Status("Done") is Status.Done
    assert Status.Done != Status.Failed
    assert Status.Done != "done"


def test_json_round_trip_uses_the_name() -> None:
    encoded = json.dumps({"status": Status.Running})
    assert encoded == '{"status": "Running"}'
    assert Status(json.loads(encoded)["status"]) is Status.Running


@pytest.mark.parametrize("bad", ["Bogus", "done", "DONE", "", " Done", "Done "])
def test_unknown_name_raises_value_error_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(UNKNOWN.format(bad)) + "$"):
        Status(bad)


@pytest.mark.parametrize("bad", [3, None, 1.5, b"Done"])
def test_non_string_value_raises_value_error_naming_it(bad: object) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(UNKNOWN.format(bad)) + "$"):
        Status(bad)


def test_unknown_name_lookup_by_key_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        Status["Bogus"]


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (Status.Pending, False),
        (Status.Queued, False),
        (Status.Running, False),
        (Status.Done, True),
        (Status.Failed, True),
        (Status.Killed, True),
    ],
)
def test_is_final(status: Status, final: bool) -> None:
    assert status.is_final is final


# -- through the task core ------------------------------------------------------


def test_new_task_is_pending(core: ModuleType) -> None:
    assert core.Task("x").parts.status is Status.Pending
    assert core.TaskBuilder("x").build().parts.status is Status.Pending
    assert core.Parts().status is Status.Pending


@pytest.mark.parametrize("name", NAMES)
def test_parts_status_accepts_member_or_name(core: ModuleType, name: str) -> None:
    parts = core.Task("x").parts
    parts.status = Status[name]
    assert parts.status is Status[name]
    parts.status = Status.Pending
    parts.status = name
    # A name is converted to the member, not stored as a plain string.
    assert parts.status is Status[name]
    assert type(parts.status) is Status
    assert core.Parts(status=name).status is Status[name]


@pytest.mark.parametrize("name", NAMES)
def test_builder_with_status_accepts_member_or_name(core: ModuleType, name: str) -> None:
    assert core.TaskBuilder("x").with_status(Status[name]).build().parts.status is Status[name]
    assert core.TaskBuilder("x").with_status(name).build().parts.status is Status[name]


def test_status_setter_rejects_unknown_name(core: ModuleType) -> None:
    parts = core.Task("x").parts
    parts.status = Status.Running
    with pytest.raises(ValueError, match="^" + re.escape(UNKNOWN.format("Finished")) + "$"):
        parts.status = "Finished"
    assert parts.status is Status.Running
    with pytest.raises(ValueError, match=re.escape(UNKNOWN.format("running"))):
        core.TaskBuilder("x").with_status("running")
    with pytest.raises(ValueError, match=re.escape(UNKNOWN.format("Nope"))):
        core.Parts(status="Nope")


@pytest.mark.parametrize("bad", [3, None, 1.0, b"Done", True])
def test_status_setter_rejects_other_types(core: ModuleType, bad: object) -> None:
    parts = core.Task("x").parts
    kind = type(bad).__name__
    with pytest.raises(TypeError, match=re.escape(f"status: expected Status, got {kind} {bad!r}")):
        parts.status = bad
    assert parts.status is Status.Pending
    with pytest.raises(
        TypeError, match=re.escape(f"with_status: expected Status, got {kind} {bad!r}")
    ):
        core.TaskBuilder("x").with_status(bad)
    with pytest.raises(TypeError, match=re.escape(f"status: expected Status, got {kind} {bad!r}")):
        core.Parts(status=bad)


def test_status_survives_clone_and_is_independent(core: ModuleType) -> None:
    task = core.Task("x")
    task.parts.status = Status.Running
    clone = task.clone()
    assert clone.parts.status is Status.Running
    clone.parts.status = Status.Done
    assert task.parts.status is Status.Running
