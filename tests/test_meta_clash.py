"""Metadata is keyed by the class's qualified name: two classes that share it are refused.

``TaskBuilder.meta(value)`` stores ``value`` under ``type(value).__qualname__``
(the key survives persistence). Two classes from different modules with the
same qualified name would overwrite each other; ``meta()`` refuses the second
one, and a ``Meta[T]`` parameter handed the other class fails the task with a
message naming both, instead of passing on a wrong object.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

from pyapalis import JsonStorage, MemoryStorage, Meta, Status, TaskBuilder, WorkerBuilder


def _module(name: str, fields: str) -> Any:
    """A class named ``Tenant`` defined in a module of its own."""
    module = sys.modules[name] = types.ModuleType(name)
    exec(  # the two same-named classes of two modules
        f"from dataclasses import dataclass\n@dataclass\nclass Tenant:\n    {fields}\n",
        module.__dict__,
    )
    return module.Tenant


BillingTenant = _module("meta_billing", "account: int = 0")
AuthTenant = _module("meta_auth", "user: str = ''")


@dataclass
class Plain:
    value: int


def test_meta_refuses_a_second_class_under_the_same_key(core: ModuleType) -> None:
    builder = core.TaskBuilder("x").meta(BillingTenant(1))
    with pytest.raises(TypeError, match=r"meta_auth\.Tenant and meta_billing\.Tenant .* 'Tenant'"):
        builder.meta(AuthTenant("ann"))


def test_meta_of_the_same_class_still_replaces(core: ModuleType) -> None:
    task = core.TaskBuilder("x").meta(BillingTenant(1)).meta(BillingTenant(2)).build()
    assert task.parts.ctx == {"Tenant": BillingTenant(2)}


def test_meta_replaces_a_decoded_dict(core: ModuleType) -> None:
    task = (
        core.TaskBuilder("x").with_ctx({"Tenant": {"user": "ann"}}).meta(BillingTenant(1)).build()
    )
    assert task.parts.ctx == {"Tenant": BillingTenant(1)}


async def _run_one(storage: Any, task: Any, handler: Any) -> Any:
    await storage.push_task(task)
    errors: list[BaseException | None] = []

    def listen(ctx: Any, event: Any) -> None:
        if event.kind.value in ("Success", "Error"):
            errors.append(event.error)
            ctx.stop()

    worker = WorkerBuilder("meta").backend(storage).on_event(listen).build(handler)
    with trio.fail_after(60):
        await worker.run()
    return errors[0]


async def test_meta_parameter_handed_the_other_class_fails_the_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    task = TaskBuilder("x").meta(AuthTenant("ann")).build()

    async def handler(item: str, tenant: Meta[BillingTenant]) -> None:  # type: ignore[valid-type]
        raise AssertionError("must not run with the wrong class")

    error = await _run_one(storage, task, handler)
    assert isinstance(error, TypeError)
    assert "wants Meta[meta_billing.Tenant]" in str(error)
    assert "holds a meta_auth.Tenant" in str(error)


async def test_meta_parameter_whose_stored_dict_does_not_fit_names_the_clash(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with JsonStorage(tmp_path / "t.jsonl") as storage:
        task = TaskBuilder("x").meta(AuthTenant("ann")).build()

        async def handler(item: str, tenant: Meta[BillingTenant]) -> None:  # type: ignore[valid-type]
            raise AssertionError("must not run with the wrong class")

        error = await _run_one(storage, task, handler)
        assert isinstance(error, TypeError)
        assert "wants Meta[meta_billing.Tenant]" in str(error)
        assert "does not fit it" in str(error)
        [result] = await storage.check_status([task.parts.task_id])
        assert result.status is Status.Failed


async def test_meta_parameter_of_the_right_class_still_works(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    seen: list[Any] = []

    async def handler(item: str, plain: Meta[Plain]) -> None:
        seen.append(plain)

    error = await _run_one(storage, TaskBuilder("x").meta(Plain(3)).build(), handler)
    assert error is None
    assert seen == [Plain(3)]
