from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from shared import schedule

BERLIN = ZoneInfo("Europe/Berlin")


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_next_run_is_strictly_after():
    assert schedule.next_run("0 0 19 * * *", at(2026, 11, 24, 16), UTC) == at(2026, 11, 24, 19)
    assert schedule.next_run("0 0 19 * * *", at(2026, 11, 24, 19), UTC) == at(2026, 11, 25, 19)


def test_weekday_schedules_skip_the_weekend():
    friday_evening = at(2026, 11, 27, 20)
    assert schedule.next_run("0 0 19 * * 1-5", friday_evening, UTC) == at(2026, 11, 30, 19)


def test_schedule_zone_moves_the_run_with_daylight_saving_time():
    # 19:00 Berlin is 17:00 UTC in summer and 18:00 UTC in winter.
    assert schedule.next_run("0 0 19 * * *", at(2026, 7, 1, 12), BERLIN) == at(2026, 7, 1, 17)
    assert schedule.next_run("0 0 19 * * *", at(2026, 12, 1, 12), BERLIN) == at(2026, 12, 1, 18)


def test_a_shutdown_just_after_midnight_belongs_to_the_next_local_day():
    mail_at = at(2026, 11, 24, 22, 50)  # 23:50 Berlin
    run = schedule.next_run("0 10 23 * * *", mail_at, UTC)  # 00:10 Berlin
    assert schedule.local_day(run, BERLIN) == date(2026, 11, 25)


def test_nearest_run_matches_a_late_sweep_to_the_run_before_it():
    late = at(2026, 11, 25, 0, 3)
    assert schedule.nearest_run("0 59 23 * * *", late, UTC) == at(2026, 11, 24, 23, 59)


def test_nearest_run_matches_a_manual_afternoon_sweep_to_tonight():
    assert schedule.nearest_run("0 0 19 * * *", at(2026, 11, 24, 14), UTC) == at(2026, 11, 24, 19)


def test_nearest_run_at_the_exact_time_is_that_run():
    assert schedule.nearest_run("0 0 19 * * *", at(2026, 11, 24, 19, 0, 0, 250000), UTC) == at(
        2026, 11, 24, 19
    )


def test_only_six_field_expressions_are_valid():
    assert schedule.is_valid("0 */5 * * * *")
    assert schedule.is_valid("0 30 19 * * Mon-Fri")
    assert not schedule.is_valid("30 19 * * *")
    assert not schedule.is_valid("0 0 25 * * *")


def test_times_are_shown_with_their_zone_and_never_twice_for_utc():
    from shared.rendering import format_local

    winter = at(2026, 11, 24, 19)
    assert format_local(winter, BERLIN) == "Tuesday 24 November 2026 at 20:00 CET (Europe/Berlin)"
    assert format_local(winter, ZoneInfo("Etc/UTC")) == "Tuesday 24 November 2026 at 19:00 UTC"
    assert format_local(winter, UTC) == "Tuesday 24 November 2026 at 19:00 UTC"
    assert format_local(winter, ZoneInfo("Europe/London")) == "Tuesday 24 November 2026 at 19:00 GMT"
