"""Parsers for the calendar's App Settings: shutdown_time, shutdown_days, skip_dates, holidays, opt_out_tag.

Like setting_rules, each returns the parsed value or raises ValueError with a sentence that completes
"<setting> ...". The `holidays` package is imported only when the setting is used (it costs ~80 ms).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, time
from functools import cache

from .shutdown_calendar import DAY_NAMES

_SEPARATORS = re.compile(r"[,;\n]")
_WALL_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_HOLIDAY_CODE = re.compile(r"([A-Za-z]{2})(?:-([A-Za-z0-9]{1,3}))?")
_TAG_NAME = re.compile(r"[^<>%&\\?/\x00-\x1f]{1,512}")
MAX_DELAY_OPTIONS = 4
RETIRED = {
    "mail_schedule": "warning_minutes (how long before the shutdown the mail goes out)",
    "shutdown_schedule": "shutdown_time, shutdown_days and time_zone",
}


def wall_time(value: str) -> time:
    match = _WALL_TIME.fullmatch(value.strip())
    if not match:
        raise ValueError(f"must be a local time HH:MM between 00:00 and 23:59, not {value!r}")
    return time(int(match.group(1)), int(match.group(2)))


def shutdown_days(value: str) -> frozenset[int]:
    """`Mon-Fri`, `Mon,Wed,Fri`, `Sat-Sun`, `Fri-Mon` (a range may wrap past Sunday)."""
    days: set[int] = set()
    for item in _items(value):
        ends = item.split("-")
        if len(ends) > 2:
            raise ValueError(f"has a range with more than two ends: {item!r}")
        start, end = _day(ends[0], value), _day(ends[-1], value)
        days.update((start + n) % 7 for n in range((end - start) % 7 + 1))
    if not days:
        raise ValueError("must name at least one day, e.g. Mon-Fri")
    return frozenset(days)


def skip_dates(value: str) -> tuple[tuple[date, date], ...]:
    """`2026-12-24..2027-01-01, 2027-05-01`: ISO dates and inclusive ranges."""
    ranges = []
    for item in _items(value):
        first, _, last = item.partition("..")
        start, end = _date(first, item), _date(last, item) if last else _date(first, item)
        if end < start:
            raise ValueError(f"has a range that ends before it starts: {item!r}")
        ranges.append((start, end))
    return tuple(ranges)


def holiday_codes(value: str) -> tuple[tuple[str, str | None], ...]:
    """`DE`, `DE-BY`, `US-CA`, `GB-SCT` (several separated by commas): countries and subdivisions the
    `holidays` package knows."""
    codes = []
    for item in _items(value):
        match = _HOLIDAY_CODE.fullmatch(item)
        if not match:
            raise ValueError(f"must be country codes like DE, DE-BY, US-CA or GB-SCT, not {item!r}")
        country, subdivision = match.group(1).upper(), match.group(2) and match.group(2).upper()
        try:
            _calendar(country, subdivision)
        except NotImplementedError:
            raise ValueError(
                f"names a country or subdivision the holidays package does not know: {item!r}"
            ) from None
        codes.append((country, subdivision))
    return tuple(dict.fromkeys(codes))


def holiday_lookup(codes: tuple[tuple[str, str | None], ...]) -> Callable[[date], str | None]:
    """A function naming the public holiday on a date (in any of `codes`), or None."""
    if not codes:
        return _no_holiday

    def holiday(day: date) -> str | None:
        return next((name for code in codes if (name := _calendar(*code).get(day))), None)

    return holiday


def delay_options(value: str) -> tuple[int, ...]:
    """`60,120`: the minutes after the shutdown a person may choose to stop an instance at instead
    (each 15-720, at most 4). Empty: keeping it all night is the only choice."""
    try:
        minutes = sorted({int(item) for item in _items(value)})
    except ValueError:
        raise ValueError(f"must be minutes separated by commas, like 60,120, not {value!r}") from None
    if len(minutes) > MAX_DELAY_OPTIONS:
        raise ValueError(f"may offer at most {MAX_DELAY_OPTIONS} delays, not {len(minutes)}")
    if any(not 15 <= m <= 720 for m in minutes):
        raise ValueError(f"must be minutes between 15 and 720 each, not {value!r}")
    return tuple(minutes)


def opt_out_tag(value: str) -> str:
    name = value.strip()
    if not _TAG_NAME.fullmatch(name):
        raise ValueError(
            f"must be an Azure tag name (up to 512 characters, none of < > % & \\ ? /): {value!r}"
        )
    return name


def _no_holiday(day: date) -> None:
    return None


@cache
def _calendar(country: str, subdivision: str | None):
    import holidays  # only deployments that use the setting pay for the import

    # English names in every log line and mail, whatever the machine's locale (LANG picks the default).
    return holidays.country_holidays(country, subdiv=subdivision, language="en_US")


def _items(value: str) -> list[str]:
    return [item.strip() for item in _SEPARATORS.split(value) if item.strip()]


def _day(name: str, value: str) -> int:
    names = [day.lower() for day in DAY_NAMES]
    if name.strip().lower() not in names:
        raise ValueError(
            f"must be English three-letter day names, ranges and lists like Mon-Fri or Mon,Wed,Fri, not {value!r}"
        )
    return names.index(name.strip().lower())


def _date(text: str, item: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"must be ISO dates (YYYY-MM-DD) or ranges (YYYY-MM-DD..YYYY-MM-DD), not {item!r}"
        ) from None
