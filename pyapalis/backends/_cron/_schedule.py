"""A cron expression in a time zone, as tick times in UNIX seconds.

The parser is cronsim (a dependency of the base install): it reads five
fields, or six with the seconds first (``*/15 * * * * *``), names of months and
weekdays, ``L``, ``LW`` and ``MON#2``, and follows Debian cron's rules for
daylight-saving changes (a job of a granularity above one hour whose time
falls in a spring-forward gap runs right after the gap; in a fall-back
overlap it runs once). The ``@hourly``-style aliases (which cron reads in a
crontab, not in an expression) are translated here.

Ticks are whole UNIX seconds: an instant, unambiguous in an overlap where a
local time happens twice.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = ["ALIASES", "Schedule"]

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The aliases of Vixie cron, and the expressions they stand for."""


class Schedule:
    """When a cron expression fires in a time zone (``tz``: a zone name or a tzinfo).

    Raises ``TypeError`` for an argument of the wrong type and ``ValueError``
    naming the problem for an expression cron cannot read, an unknown time
    zone, or a schedule that never fires.
    """

    __slots__ = ("_cron", "expression", "tz", "zone")

    def __init__(self, expression: str, tz: str | _dt.tzinfo = "UTC") -> None:
        if not isinstance(expression, str):
            raise TypeError(
                f"CronStream: expression must be a str, got {type(expression).__name__} "
                f"{expression!r}"
            )
        self.expression = " ".join(expression.split())
        """The expression as given, its whitespace collapsed."""
        self.tz, self.zone = _zone(tz)
        cron = ALIASES.get(self.expression.lower(), self.expression)
        if cron.startswith("@"):
            raise ValueError(
                f"CronStream: unknown alias {expression!r} (known: {', '.join(ALIASES)})"
            )
        fields = len(cron.split())
        if fields not in (5, 6):
            raise ValueError(
                f"CronStream: cron expression {expression!r} has {fields} fields; expected 5 "
                "(minute hour day month weekday) or 6 (seconds first)"
            )
        self._cron = cron
        try:
            CronSim(cron, _dt.datetime(2000, 1, 1, tzinfo=self.tz))
        except CronSimError as error:
            raise ValueError(f"CronStream: bad cron expression {expression!r}: {error}") from None
        if self.first_after(0) is None:
            raise ValueError(f"CronStream: cron expression {expression!r} never fires")

    def first_after(self, after: int) -> int | None:
        """The first tick later than ``after`` (UNIX seconds); None if there is none."""
        return _first(CronSim(self._cron, self.datetime_of(after)), lambda tick: tick > after)

    def last_before(self, before: int) -> int | None:
        """The last tick earlier than ``before`` (UNIX seconds); None if there is none.

        Forward iteration is the schedule: cronsim's reverse iteration reads
        local times, and inside a fall-back overlap it can step over a tick of
        the overlap's first pass. So the tick it finds is only a start, walked
        forward while a later tick is still earlier than ``before``.
        """
        last = _first(
            CronSim(self._cron, self.datetime_of(before), reverse=True),
            lambda tick: tick < before,
        )
        while last is not None:
            later = self.first_after(last)
            if later is None or later >= before:
                break
            last = later
        return last

    def datetime_of(self, tick: float) -> _dt.datetime:
        """The aware datetime of UNIX seconds ``tick`` in the schedule's time zone."""
        return _dt.datetime.fromtimestamp(tick, self.tz)

    def __repr__(self) -> str:
        return f"Schedule({self.expression!r}, tz={self.zone!r})"


def _first(ticks: Iterator[_dt.datetime], wanted: object) -> int | None:
    """The first of ``ticks`` (as UNIX seconds) that ``wanted`` accepts.

    cronsim started inside a fall-back overlap may first return the tick of
    the overlap's first pass, which is already behind: skipped here (that job
    ran then, and Debian cron runs it once).
    """
    assert callable(wanted)
    try:
        for when in ticks:
            tick = int(when.timestamp())
            if wanted(tick):
                return tick
    except StopIteration:  # pragma: no cover - cronsim ends by returning, not raising
        pass
    return None


def _zone(tz: object) -> tuple[_dt.tzinfo, str]:
    """The tzinfo of ``tz`` and the name that identifies it."""
    if isinstance(tz, str):
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"CronStream: unknown time zone {tz!r}") from None
        return zone, zone.key
    if isinstance(tz, ZoneInfo):
        return tz, tz.key
    if isinstance(tz, _dt.tzinfo):
        return tz, str(tz)
    raise TypeError(
        f"CronStream: tz must be a zone name (str) or a tzinfo, got {type(tz).__name__} {tz!r}"
    )
