"""The estimated saving of a stop: the instance's hourly list price for every hour it stays stopped
until people start working again.

A stop on the night of day D saves the hours from the stop until the first `workday_start` (local time)
after D's shutdown on a day that has a shutdown by the calendar: a Friday 20:00 stop counts until Monday
morning, skip days and public holidays extend it, and a shutdown after midnight (02:30) counts until
08:00 that same morning. Hours are real elapsed hours, so a night across a DST change counts one hour
more or less. A delayed stop at or after that time saves nothing: people are at work by then.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from .shutdown_calendar import LOOKAHEAD_DAYS, ShutdownCalendar, local_instant


def back_to_work(calendar: ShutdownCalendar, night_day: date, workday_start: time) -> datetime:
    """The first `workday_start` after the shutdown of `night_day` on a day with a shutdown (the next
    day's, if none is ahead). Counted from the shutdown, not the stop: a stop delayed into the working
    day must not be credited the whole day and night that follow."""
    zone = calendar.rules.zone
    shutdown = local_instant(night_day, calendar.rules.shutdown_time, zone)
    for offset in range(LOOKAHEAD_DAYS):
        day = night_day + timedelta(days=offset)
        back = local_instant(day, workday_start, zone)
        if back > shutdown and calendar.why_no_shutdown(day) is None:
            return back
    return local_instant(night_day + timedelta(days=1), workday_start, zone)


def stopped_hours(
    calendar: ShutdownCalendar, night_day: date, stopped_at: datetime, workday_start: time
) -> float:
    """Hours an instance stopped at `stopped_at` on the night of `night_day` stays stopped until work starts."""
    back = back_to_work(calendar, night_day, workday_start)
    return max(0.0, (back - stopped_at).total_seconds() / 3600)


def saving(hours: float, hourly_price: float | None) -> float | None:
    """The money a stop saves, or None when the price is not known (the report shows hours then)."""
    return None if hourly_price is None else round(hours * hourly_price, 2)
