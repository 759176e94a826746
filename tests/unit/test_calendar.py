"""The calendar with plain values: local time across DST, days, skip dates, holidays, due windows."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared import calendar_settings as cal
from shared.domain import WorkspaceTarget
from shared.shutdown_calendar import CalendarRules, ShutdownCalendar, local_instant

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
TARGET = WorkspaceTarget("00000000-1111-2222-3333-444444444444", "ml-rg", "ml-ws")


def calendar(zone=BERLIN, **rules) -> ShutdownCalendar:
    return ShutdownCalendar(TARGET, CalendarRules(zone=zone, **rules))


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ------------------------------------------------------------------------------------ local time
@pytest.mark.parametrize(
    ("zone", "day", "wall", "expected"),
    [
        (BERLIN, date(2026, 11, 24), time(20), utc(2026, 11, 24, 19)),  # winter, CET
        (BERLIN, date(2026, 7, 1), time(20), utc(2026, 7, 1, 18)),  # summer, CEST
        (BERLIN, date(2026, 3, 29), time(2, 30), utc(2026, 3, 29, 1)),  # gap: first instant after, 03:00 CEST
        (BERLIN, date(2026, 10, 25), time(2, 30), utc(2026, 10, 25, 0, 30)),  # twice: the first (CEST)
        (NEW_YORK, date(2026, 3, 8), time(2, 30), utc(2026, 3, 8, 7)),  # gap -> 03:00 EDT
        (NEW_YORK, date(2026, 11, 1), time(1, 30), utc(2026, 11, 1, 5, 30)),  # twice: the first (EDT)
        (
            ZoneInfo("Australia/Lord_Howe"),
            date(2026, 10, 4),
            time(2, 15),
            utc(2026, 10, 3, 15, 30),
        ),  # 30-min gap
        (ZoneInfo("Asia/Kolkata"), date(2026, 11, 24), time(20), utc(2026, 11, 24, 14, 30)),  # no DST, +05:30
    ],
)
def test_a_local_wall_time_becomes_one_utc_instant_across_dst(zone, day, wall, expected):
    assert local_instant(day, wall, zone) == expected


def test_the_shutdown_follows_local_time_across_both_dst_changes_in_berlin():
    cal_ = calendar(shutdown_time=time(20))
    hours = [cal_.shutdown_on(date(2026, 3, d)).hour for d in (28, 29)] + [
        cal_.shutdown_on(date(2026, 10, d)).hour for d in (24, 25)
    ]
    assert hours == [19, 18, 18, 19]  # 20:00 local every day; UTC moves with the clocks


# ------------------------------------------------------------------------------------ which days
def test_days_outside_shutdown_days_have_no_shutdown_and_say_why():
    cal_ = calendar(days=cal.shutdown_days("Mon-Fri"))
    assert cal_.shutdown_on(date(2026, 11, 27)) is not None  # a Friday
    assert cal_.shutdown_on(date(2026, 11, 28)) is None
    assert cal_.why_no_shutdown(date(2026, 11, 28)) == "Saturday is not in shutdown_days"


def test_skip_ranges_are_inclusive_at_both_ends():
    cal_ = calendar(skip_ranges=cal.skip_dates("2026-12-24..2027-01-01, 2027-05-01"))
    no_shutdown = [d for d in (date(2026, 12, 23), date(2026, 12, 24), date(2027, 1, 1), date(2027, 1, 2),
                               date(2027, 5, 1)) if cal_.shutdown_on(d) is None]  # fmt: skip
    assert no_shutdown == [date(2026, 12, 24), date(2027, 1, 1), date(2027, 5, 1)]
    assert "skip_dates" in cal_.why_no_shutdown(date(2026, 12, 30))


def test_public_holidays_of_a_subdivision_have_no_shutdown():
    cal_ = calendar(holiday=cal.holiday_lookup(cal.holiday_codes("DE-BY")))
    assert (
        cal_.why_no_shutdown(date(2026, 1, 6)) == "2026-01-06 is a public holiday (Epiphany)"
    )  # Bavaria only
    assert cal_.shutdown_on(date(2026, 1, 7)) is not None
    berlin_only = calendar(holiday=cal.holiday_lookup(cal.holiday_codes("DE-BE")))
    assert berlin_only.shutdown_on(date(2026, 1, 6)) is not None


# ------------------------------------------------------------------------------------ due windows
def test_mail_is_due_in_the_warning_window_before_the_shutdown_only():
    cal_ = calendar(warning=timedelta(minutes=60))  # 20:00 Berlin = 19:00 UTC in November
    assert cal_.mail_due(utc(2026, 11, 24, 17, 55)) is None
    assert cal_.mail_due(utc(2026, 11, 24, 18, 0)).day == date(2026, 11, 24)
    assert cal_.mail_due(utc(2026, 11, 24, 18, 55)).day == date(2026, 11, 24)
    assert cal_.mail_due(utc(2026, 11, 24, 19, 0)) is None  # the shutdown has begun


def test_the_sweep_is_due_from_the_shutdown_to_the_end_of_the_catch_up_window():
    cal_ = calendar(catch_up=timedelta(minutes=120))
    assert cal_.sweep_due(utc(2026, 11, 24, 18, 55)) is None
    night = cal_.sweep_due(utc(2026, 11, 24, 19, 0))
    assert (night.day, night.shutdown_at) == (date(2026, 11, 24), utc(2026, 11, 24, 19))
    assert cal_.main_sweep_open(night, utc(2026, 11, 24, 21, 0))
    assert not cal_.main_sweep_open(night, utc(2026, 11, 24, 21, 5))
    # An instance told late, at the end of that window, is stopped inside a catch-up window of its own.
    assert cal_.sweep_due(utc(2026, 11, 24, 23, 0)).day == date(2026, 11, 24)
    assert cal_.sweep_due(utc(2026, 11, 24, 23, 5)) is None
    assert cal_.audit_due(utc(2026, 11, 24, 23, 5)).day == date(2026, 11, 24)
    assert cal_.audit_due(utc(2026, 11, 25, 0, 5)) is None


def test_a_late_notice_keeps_the_sweep_due_for_the_minimum_notice_and_its_catch_up():
    cal_ = calendar(catch_up=timedelta(minutes=60), minimum_notice=timedelta(minutes=30))
    night = cal_.night(date(2026, 11, 24))
    assert cal_.notice_due(utc(2026, 11, 24, 17, 59)) is None  # before the warning
    assert cal_.notice_due(utc(2026, 11, 24, 18, 0)) == night == cal_.notice_due(utc(2026, 11, 24, 20, 0))
    assert cal_.notice_due(utc(2026, 11, 24, 20, 5)) is None  # the main sweep's window has closed
    assert cal_.sweep_due(utc(2026, 11, 24, 21, 30)) == night  # told at 20:00, held until 20:30
    assert cal_.sweep_due(utc(2026, 11, 24, 21, 35)) is None


def test_a_next_morning_catch_up_never_serves_the_night_before_outside_its_window():
    cal_ = calendar()
    assert cal_.sweep_due(utc(2026, 11, 25, 6, 1)) is None  # 07:01 Berlin: people are working


def test_two_ticks_straddling_local_midnight_belong_to_one_night():
    cal_ = calendar(shutdown_time=time(23, 50), catch_up=timedelta(minutes=30))
    before, after = utc(2026, 11, 24, 22, 55), utc(2026, 11, 24, 23, 5)  # 23:55 and 00:05 Berlin
    assert cal_.sweep_due(before) == cal_.sweep_due(after)
    assert cal_.sweep_due(after).day == date(2026, 11, 24)


def test_a_window_that_reaches_back_across_midnight_belongs_to_the_next_local_day():
    cal_ = calendar(shutdown_time=time(0, 30), warning=timedelta(minutes=90))
    night = cal_.mail_due(utc(2026, 11, 24, 22, 0))  # 23:00 Berlin on the 24th
    assert night.day == date(2026, 11, 25)


def test_a_skipped_day_is_reported_once_at_its_shutdown_time():
    cal_ = calendar(days=cal.shutdown_days("Mon-Fri"))
    assert cal_.skipped(utc(2026, 11, 28, 19, 0)) == (date(2026, 11, 28), "Saturday is not in shutdown_days")
    assert cal_.skipped(utc(2026, 11, 28, 19, 5)) is None
    assert cal_.skipped(utc(2026, 11, 27, 19, 0)) is None  # a Friday: a real shutdown, nothing to explain


def test_the_next_night_skips_weekends_and_holidays():
    cal_ = calendar(days=cal.shutdown_days("Mon-Fri"), skip_ranges=cal.skip_dates("2026-11-30"))
    night = cal_.next_night(utc(2026, 11, 27, 19, 30))  # Friday after the shutdown
    assert night.day == date(2026, 12, 1)  # not Sat, Sun, nor the skipped Monday


# ------------------------------------------------------------------------------------ day specs
@pytest.mark.parametrize(
    ("spec", "days"),
    [
        ("Mon-Fri", {0, 1, 2, 3, 4}),
        ("Mon,Wed,Fri", {0, 2, 4}),
        ("Sat-Sun", {5, 6}),
        ("fri-MON", {4, 5, 6, 0}),  # ranges wrap past Sunday; names ignore case
        ("Mon-Wed, Fri", {0, 1, 2, 4}),
        ("Mon-Sun", set(range(7))),
        ("Tue", {1}),
    ],
)
def test_shutdown_days(spec, days):
    assert cal.shutdown_days(spec) == frozenset(days)


@pytest.mark.parametrize("spec", ["Monday", "Mon-", "Mon..Fri", "1-5", "Mo-Fr", "", ",", "Mon-Fri-Sat"])
def test_malformed_shutdown_days_are_refused(spec):
    with pytest.raises(ValueError):
        cal.shutdown_days(spec)


def test_holiday_names_are_english_whatever_the_machines_locale(monkeypatch):
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    cal._calendar.cache_clear()  # built afresh under this locale
    cal_ = calendar(holiday=cal.holiday_lookup(cal.holiday_codes("DE-BY")))
    assert cal_.why_no_shutdown(date(2026, 1, 6)) == "2026-01-06 is a public holiday (Epiphany)"
