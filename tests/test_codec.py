"""JsonCodec refuses NaN and ±Infinity (JSON has no form for them; orjson writes null).

A value that JSON cannot hold raises CodecError naming where it is, in
arguments, metadata and results alike: ``{"price": nan}`` must never come back
as ``{"price": None}``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pyapalis import CodecError, Status, TaskBuilder, TaskError, WorkerBuilder
from pyapalis._worker._context import WorkerContext
from pyapalis._worker._events import Event, EventKind
from pyapalis.backends import _codec as codec_module
from pyapalis.backends._codec import JsonCodec
from pyapalis.backends._json._storage import JsonStorage

NAN = math.nan
INF = math.inf


@dataclasses.dataclass
class Price:
    amount: float
    currency: str | None = None


@dataclasses.dataclass(slots=True)
class Line:
    price: Price
    quantity: int


class Level(enum.Enum):
    HIGH = INF


MESSAGE = "is not a finite number (JSON has no NaN or Infinity)"


@pytest.mark.parametrize(
    ("value", "where", "bad"),
    [
        (NAN, "$", "nan"),
        ({"price": NAN}, '$["price"]', "nan"),
        ({"price": INF}, '$["price"]', "inf"),
        ({"price": -INF}, '$["price"]', "-inf"),
        ([1.5, None, {"a": [0.0, NAN]}], '$[2]["a"][1]', "nan"),
        ((1, (2, -INF)), "$[1][1]", "-inf"),
        ({'odd key "x"': [NAN]}, '$["odd key \\"x\\""][0]', "nan"),
        (Price(NAN), "$.amount", "nan"),
        (
            {"lines": [Line(Price(1.0), 1), Line(Price(INF), 2)]},
            '$["lines"][1].price.amount',
            "inf",
        ),
        ([Level.HIGH], "$[0]", "inf"),
    ],
)
def test_json_codec_refuses_nan_and_infinity_naming_where(value: Any, where: str, bad: str) -> None:
    with pytest.raises(CodecError) as info:
        JsonCodec().encode(value)
    message = str(info.value)
    assert message.startswith(f"JsonCodec cannot encode {type(value).__name__} value ")
    assert message.endswith(f": {bad} at {where} {MESSAGE}"), message


def test_json_codec_refuses_nan_and_infinity_in_numpy_values() -> None:
    numpy = pytest.importorskip(
        "numpy", reason="numpy is not installed (JsonCodec serializes numpy values when it is)"
    )
    codec = JsonCodec()
    for value, where, bad in [
        (numpy.array([[1.0, 2.0], [NAN, 4.0]]), "$[1][0]", "nan"),
        ({"x": numpy.float32(-INF)}, '$["x"]', "-inf"),
        ({"x": numpy.float64(NAN)}, '$["x"]', "nan"),
        ({"x": numpy.array([1.0, INF], dtype=numpy.float16)}, '$["x"][1]', "inf"),
    ]:
        with pytest.raises(CodecError, match=re.escape(f": {bad} at {where} {MESSAGE}")):
            codec.encode(value)
    assert codec.decode(codec.encode({"a": numpy.array([1.0, -2.5]), "b": None})) == {
        "a": [1.0, -2.5],
        "b": None,
    }


def test_a_nan_made_by_default_is_refused_too() -> None:
    class Sensor:
        pass

    codec = JsonCodec(default=lambda value: NAN if isinstance(value, Sensor) else str(value))
    with pytest.raises(CodecError, match=re.escape(f'nan at $["reading"] {MESSAGE}')):
        codec.encode({"reading": Sensor()})


@pytest.mark.parametrize(
    "value",
    [
        {"price": None, "note": "null", "nullable": [None, 1.5, -0.0, 1e308]},
        [None, "NaN", "Infinity", 0.1],
        Price(2.5, None),
        {"private": dataclasses.make_dataclass("P", [("_x", float)])(NAN)},  # not written
    ],
)
def test_finite_values_and_real_nulls_round_trip(value: Any) -> None:
    codec = JsonCodec()
    data = codec.encode(value)
    assert codec.decode(data) == codec.decode(codec.encode(value))
    if isinstance(value, dict) and "price" in value:
        assert codec.decode(data) == value


def test_values_whose_json_has_no_null_are_not_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cost stays orjson's: a NaN can only come out as null, so without one no walk."""

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("searched a value without null")

    monkeypatch.setattr(codec_module, "non_finite", fail)
    codec = JsonCodec()
    assert codec.decode(codec.encode({"price": 1.5, "items": [1, 2.5]})) == {
        "price": 1.5,
        "items": [1, 2.5],
    }
    with pytest.raises(AssertionError, match="searched"):
        codec.encode({"price": None})


def test_non_finite_reports_the_first_bad_value_or_none() -> None:
    from pyapalis.backends._codec import non_finite

    assert non_finite({"a": [1.0, None, "x"]}) is None
    path, value = non_finite({"a": [1.0, INF], "b": NAN}) or ("", 0.0)
    assert (path, value) == ('$["a"][1]', INF)
    assert non_finite([NAN], root="payload") is not None
    assert non_finite([NAN], root="payload")[0] == "payload[0]"  # type: ignore[index]


# -- JsonStorage: arguments, metadata and results ------------------------------------------------


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.jsonl"


@pytest.fixture
def storage(path: Path) -> Any:
    with JsonStorage(path) as storage:
        yield storage


STORE = "JsonStorage: cannot store the task's"


async def test_json_storage_refuses_nan_arguments_and_metadata_writing_nothing(
    storage: JsonStorage, path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    size = path.stat().st_size
    with pytest.raises(
        CodecError,
        match=re.escape(
            f"{STORE} arguments: JsonCodec cannot encode dict value {{'price': nan}}: "
            f'nan at $["price"] {MESSAGE}'
        ),
    ):
        await storage.push({"price": NAN})
    with pytest.raises(
        CodecError,
        match=re.escape(f"{STORE} arguments: JsonCodec cannot encode float value inf: inf at $ "),
    ):
        await storage.push_bulk([{"ok": 1.0}, INF, 3])
    meta_task = TaskBuilder("x").meta(Price(-INF)).build()
    with pytest.raises(
        CodecError,
        match=re.escape(f"{STORE} metadata: ")
        + ".*"
        + re.escape(f': -inf at $["Price"].amount {MESSAGE}'),
    ):
        await storage.push_task(meta_task)
    assert path.stat().st_size == size, "nothing written"
    assert len(storage) == 0


async def test_json_storage_fails_a_task_whose_result_holds_nan(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    """A NaN result is not stored as None: the task is Failed with the CodecError message."""
    task_id = await storage.push("quote")
    kept_id = await storage.push("none")

    async def handler(item: str) -> Any:
        return {"price": NAN} if item == "quote" else {"price": None}

    await _drain(storage, handler, executions=2)
    [result, kept] = await storage.check_status([task_id, kept_id])
    assert result.status is Status.Failed
    with pytest.raises(
        TaskError,
        match="^"
        + re.escape(
            f"CodecError: {STORE} result: JsonCodec cannot encode dict value "
            f"{{'price': nan}}: nan at $[\"price\"] {MESSAGE}"
        )
        + "$",
    ):
        result.unwrap()
    assert kept.status is Status.Done
    assert kept.unwrap() == {"price": None}  # a real None is a real null


async def _drain(storage: JsonStorage, handler: Callable[..., Any], *, executions: int) -> None:
    ended = 0

    def on_event(ctx: WorkerContext, event: Event) -> None:
        nonlocal ended
        if event.kind in (EventKind.Success, EventKind.Error):
            ended += 1
            if ended == executions:
                ctx.stop()

    await WorkerBuilder("codec").backend(storage).on_event(on_event).build(handler).run()
