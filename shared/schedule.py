"""When the timers fire, and which night a shutdown belongs to.

Schedules are NCRONTAB expressions with six fields (second first), as Azure Functions reads them.
The Functions host evaluates them in UTC unless the platform time zone (`TZ` on Linux plans that
support it) says otherwise; `Settings.schedule_zone` carries that zone. The day a cancellation
belongs to is the *local* date (in `time_zone`) of the shutdown run it is meant for.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo

from croniter import croniter


def is_valid(expression: str) -> bool:
    return len(expression.split()) == 6 and croniter.is_valid(expression, second_at_beginning=True)


def next_run(expression: str, after: datetime, zone: tzinfo) -> datetime:
    """The first run strictly after `after`, in UTC."""
    it = croniter(expression, after.astimezone(zone), second_at_beginning=True)
    return it.get_next(datetime).astimezone(UTC)


def previous_run(expression: str, before: datetime, zone: tzinfo) -> datetime:
    """The last run at or before `before`, in UTC."""
    local = before.astimezone(zone)
    if croniter.match(expression, local, second_at_beginning=True):
        return local.replace(microsecond=0).astimezone(UTC)
    it = croniter(expression, local, second_at_beginning=True)
    return it.get_prev(datetime).astimezone(UTC)


def nearest_run(expression: str, at: datetime, zone: tzinfo) -> datetime:
    """The scheduled run closest to `at`, before or after.

    A sweep that starts late (after midnight for a 23:59 schedule) belongs to the run before it;
    a sweep started by hand in the afternoon belongs to tonight's run, so cancellations made for
    tonight are honoured either way.
    """
    before = previous_run(expression, at, zone)
    after = next_run(expression, at, zone)
    return before if at - before <= after - at else after


def local_day(instant: datetime, zone: tzinfo) -> date:
    return instant.astimezone(zone).date()
