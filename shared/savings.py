"""The estimated saving of a stop: the instance's hourly list price for every hour it stays stopped
until people start working again.

A stop on the night of day D saves the hours from the stop until `workday_start` (local time) on the
first day after D that has a shutdown by the calendar: a Friday stop counts until Monday morning, and
skip days and public holidays extend it. Hours are real elapsed hours, so a night across a DST change
counts one hour more or less. A stop at or after that time saves nothing.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from .shutdown_calendar import LOOKAHEAD_DAYS, ShutdownCalendar, local_instant


def next_workday(calendar: ShutdownCalendar, night_day: date) -> date:
    """The first day after `night_day` that is not free of shutdowns (the next day, if none is ahead)."""
    for offset in range(1, LOOKAHEAD_DAYS):
        day = night_day + timedelta(days=offset)
        if calendar.why_no_shutdown(day) is None:
            return day
    return night_day + timedelta(days=1)


def stopped_hours(
    calendar: ShutdownCalendar, night_day: date, stopped_at: datetime, workday_start: time
) -> float:
    """Hours an instance stopped at `stopped_at` on the night of `night_day` stays stopped until work starts."""
    back = local_instant(next_workday(calendar, night_day), workday_start, calendar.rules.zone)
    return max(0.0, (back - stopped_at).total_seconds() / 3600)


def saving(hours: float, hourly_price: float | None) -> float | None:
    """The money a stop saves, or None when the price is not known (the report shows hours then)."""
    return None if hourly_price is None else round(hours * hourly_price, 2)
