"""What a workflow keeps in its backend: task ids and task args, one rule each.

Every step of a run is a task whose id derives from the workflow's name, the
run's id and the step's place, so that pushing a step twice (a step re-run
after a crash, two workers finishing the last fan-out items at once) stores it
once: ``push_task`` of an id that exists stores nothing, on every backend.

* a step: ``wf:<name>:<run>:<step>``, args ``{workflow, run, step, input}``;
* a fan-out item: ``wf:<name>:<run>:<step>:<item>``, args adding ``item`` and
  ``items`` (how many);
* an item's result: ``wf:<name>:<run>:<step>:<item>:result``, args with
  ``result`` instead of ``input``. It is parked (due in the year 9999, never
  run): a record that survives in any backend and that ``fetch_by_id`` finds,
  so the item that finishes last sees every result, whoever ran the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .._implementation import TaskId

PARKED_AT = 253402300799.0
"""The ``run_at`` of result records: 9999-12-31T23:59:59Z, after any real run."""

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def check_name(value: object, where: str) -> str:
    """A workflow name or run id: non-empty letters, digits, ``_``, ``.``, ``-``.

    ``:`` separates the parts of a task id, so it may not appear in them.
    """
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a str, got {value!r}")
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{where} must be non-empty letters, digits, '_', '.' or '-', got {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class RunIds:
    """The task ids of one run of one workflow."""

    workflow: str
    run: str

    @property
    def prefix(self) -> str:
        return f"wf:{self.workflow}:{self.run}"

    def step(self, step: int) -> TaskId:
        return TaskId(f"{self.prefix}:{step}")

    def item(self, step: int, item: int) -> TaskId:
        return TaskId(f"{self.prefix}:{step}:{item}")

    def result(self, step: int, item: int) -> TaskId:
        return TaskId(f"{self.prefix}:{step}:{item}:result")

    def step_args(self, step: int, value: Any) -> dict[str, Any]:
        return {"workflow": self.workflow, "run": self.run, "step": step, "input": value}

    def item_args(self, step: int, item: int, items: int, value: Any) -> dict[str, Any]:
        return {**self.step_args(step, value), "item": item, "items": items}

    def result_args(self, step: int, item: int, items: int, value: Any) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "run": self.run,
            "step": step,
            "item": item,
            "items": items,
            "result": value,
        }


@dataclass(frozen=True, slots=True)
class Message:
    """A workflow task's args, checked: which run, which step, which item, what value."""

    ids: RunIds
    step: int
    item: int | None
    items: int
    value: Any
    is_result: bool

    @classmethod
    def parse(cls, args: object, workflow: str) -> Message:
        """Read a task's args; ``ValueError`` naming the problem if they are not a
        task of ``workflow``."""
        if not isinstance(args, dict) or args.get("workflow") != workflow:
            raise ValueError(f"not a task of workflow {workflow!r}: args {args!r}")
        run, step, item = args.get("run"), args.get("step"), args.get("item")
        if not isinstance(run, str) or not isinstance(step, int) or step < 0:
            raise ValueError(f"workflow {workflow!r}: malformed task args {args!r}")
        items = args.get("items", 0)
        if item is not None and not (isinstance(item, int) and isinstance(items, int)):
            raise ValueError(f"workflow {workflow!r}: malformed item args {args!r}")
        is_result = "result" in args
        return cls(
            RunIds(workflow, run),
            step,
            item,
            items,
            args["result"] if is_result else args.get("input"),
            is_result,
        )
