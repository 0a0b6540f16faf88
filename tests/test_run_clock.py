"""The kit's run clock: one wall <-> trio conversion, and virtual clocks declared, not guessed."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from pyapalis.backends._kit._clock import DeadlineConverter, VirtualClock, run_clock, seconds_until


class _ManualClock(trio.abc.Clock):
    """A clock of our own: virtual only once registered."""

    def __init__(self) -> None:
        self.now = 0.0

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self.now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return 0.0 if deadline <= self.now else 0.001


def _virtual_in(clock: trio.abc.Clock | None) -> bool:
    async def main() -> bool:
        return run_clock().virtual

    result: bool = trio.run(main, clock=clock)
    return result


def test_the_system_clock_is_not_virtual() -> None:
    assert _virtual_in(None) is False


def test_mock_clock_is_declared_virtual_by_pyapalis_testing() -> None:
    assert isinstance(trio.testing.MockClock(), VirtualClock)
    assert _virtual_in(trio.testing.MockClock()) is True


def test_a_clock_is_virtual_only_once_registered() -> None:
    class Mine(_ManualClock):
        pass

    assert _virtual_in(Mine()) is False
    VirtualClock.register(Mine)
    assert _virtual_in(Mine()) is True


async def test_one_converter_per_run(autojump_clock: trio.testing.MockClock) -> None:
    assert run_clock() is run_clock()


async def test_wall_time_and_deadline_are_inverse_and_follow_virtual_leaps(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    frozen = time.time()
    monkeypatch.setattr(time, "time", lambda: frozen)  # the machine's clock stands still
    clock = DeadlineConverter()
    start = trio.current_time()
    assert clock.wall_now() == pytest.approx(frozen)
    await trio.sleep(100)  # trio's clock leaps; wall now follows it
    assert clock.wall_now() == pytest.approx(frozen + 100)
    wall = clock.wall_time(start + 130)
    assert wall == pytest.approx(frozen + 130)
    assert clock.deadline(wall) == pytest.approx(start + 130)


async def test_deadlines_converted_together_keep_their_order(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    readings = iter(range(1_000_000, 2_000_000))
    monkeypatch.setattr(time, "time", lambda: float(next(readings)))  # moves at every read
    deadline_of = run_clock().deadlines()
    run_ats = [1_000_010.0, 1_000_010.5, 1_000_011.0]
    converted = [deadline_of(run_at) for run_at in run_ats]
    assert converted == sorted(converted)
    assert converted[1] - converted[0] == 0.5


def test_seconds_until_reads_the_system_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1000.0)
    assert seconds_until(1012.5) == 12.5
    assert seconds_until(990.0) == -10.0
