"""Which night is due, when: the app's own calendar, in the workspace's local time.

The Functions host fires both timers every five minutes in UTC (the only zone Linux Consumption and
Flex Consumption read schedules in). Each tick asks this calendar what is due, so local time, daylight
saving, skip days and public holidays are decided here, with plain values, and tested as such.

A *night* is one workspace's shutdown on one local date. For each night with a shutdown at S:
- MailSender mails on the first tick inside [S - warning, S);
- ComputeShutdown sweeps on the first tick inside [S, S + catch_up] (and again on later ticks in that
  window for whatever a failed tick left); an instance somebody chose to stop later, at S + delay, is
  stopped on the first tick inside [S + delay, S + delay + catch_up];
- an instance nobody was told about `minimum_notice` before its stop (it started after the mail) gets a
  late notice from the next MailSender tick inside [S - warning, S + catch_up], and is held until then;
- after the last of those windows, for AUDIT, a tick checks the sweep happened, or records it missed.
A wall-clock time that does not exist on a spring-forward night means the first instant after the gap;
one that occurs twice on a fall-back night means its first occurrence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .domain import Night, WorkspaceTarget

TICK = timedelta(minutes=5)  # both timers' heartbeat: `0 */5 * * * *` in their function.json
AUDIT = timedelta(minutes=60)  # how long after a night's catch-up window a tick still checks it was swept
LOOKAHEAD_DAYS = 400  # a skip range may cover months; a calendar with no shutdown for longer has none
_AROUND = (timedelta(days=-1), timedelta(0), timedelta(days=1))
_ZERO = timedelta(0)
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class CalendarRules:
    """The calendar settings, parsed. `holiday` names the public holiday on a date, or None."""

    zone: ZoneInfo
    shutdown_time: time = time(20, 0)
    days: frozenset[int] = frozenset(range(7))  # date.weekday(): 0 = Monday
    warning: timedelta = timedelta(minutes=60)
    catch_up: timedelta = timedelta(minutes=120)
    skip_ranges: tuple[tuple[date, date], ...] = ()
    holiday: Callable[[date], str | None] = field(default=lambda day: None, compare=False)
    longest_delay: timedelta = timedelta(0)  # the longest "stop it later" a person may choose
    minimum_notice: timedelta = timedelta(0)  # how long before its stop an instance's people must be told

    @property
    def last_stop(self) -> timedelta:
        """How long after the shutdown a night's last stop may be due: the longest delay, or a late
        notice given at the end of the catch-up window plus the minimum notice."""
        return max(self.longest_delay, self.catch_up + self.minimum_notice)


class ShutdownCalendar:
    def __init__(self, target: WorkspaceTarget, rules: CalendarRules):
        self.target, self.rules = target, rules
        self._instants: dict[date, datetime | None] = {}
        self._walls: dict[date, datetime] = {}
        self._nights: dict[date, Night | None] = {}

    # ------------------------------------------------------------------ which days have a shutdown
    def why_no_shutdown(self, day: date) -> str | None:
        """Why `day` has no shutdown (for the log line of a skipped day), or None if it has one."""
        if day.weekday() not in self.rules.days:
            return f"{day:%A} is not in shutdown_days"
        for first, last in self.rules.skip_ranges:
            if first <= day <= last:
                return (
                    f"{day} is in skip_dates ({first}..{last})"
                    if first != last
                    else f"{day} is in skip_dates"
                )
        holiday = self.rules.holiday(day)
        return f"{day} is a public holiday ({holiday})" if holiday else None

    def shutdown_on(self, day: date) -> datetime | None:
        """The UTC instant of the shutdown on local date `day`, or None on a day without one."""
        if day not in self._instants:
            self._instants[day] = None if self.why_no_shutdown(day) else self._wall_instant(day)
        return self._instants[day]

    def _wall_instant(self, day: date) -> datetime:
        """shutdown_time on `day`, whether or not that day has a shutdown (cached: every tick asks)."""
        if day not in self._walls:
            self._walls[day] = local_instant(day, self.rules.shutdown_time, self.rules.zone)
        return self._walls[day]

    def night(self, day: date) -> Night | None:
        if day not in self._nights:  # cached: every tick asks about yesterday, today and tomorrow
            at = self.shutdown_on(day)
            self._nights[day] = Night(self.target, day, at) if at else None
        return self._nights[day]

    # ------------------------------------------------------------------ what a tick at `now` must do
    def mail_due(self, now: datetime) -> Night | None:
        return self._within(now, -self.rules.warning, _ZERO, closed=False)

    def sweep_due(self, now: datetime) -> Night | None:
        """From the shutdown until the catch-up window of the latest delayed stop has closed."""
        return self._within(now, _ZERO, self.rules.catch_up + self.rules.last_stop, closed=True)

    def notice_due(self, now: datetime) -> Night | None:
        """The night whose instances started after its warning mail may still need a late notice: from
        the warning until the main sweep's window closes."""
        return self._within(now, -self.rules.warning, self.rules.catch_up, closed=True)

    def main_sweep_open(self, night: Night, now: datetime) -> bool:
        """Whether the night's sweep of everything not kept may still run (its catch-up window)."""
        return night.shutdown_at <= now <= night.shutdown_at + self.rules.catch_up

    def reminder_due(self, now: datetime, before: timedelta) -> Night | None:
        """The night whose delayed stops may need a reminder `before` them now."""
        if not before or not self.rules.longest_delay:
            return None
        return self._within(now, -before, self.rules.longest_delay, closed=False)

    def night_ends(self, night: Night) -> datetime:
        """When the night's links stop speaking for it: once its last stop window has closed, and at the
        latest when the next night's warning starts (a page must never say "kept" for a night whose
        sweep will not honour it)."""
        end = night.shutdown_at + self.rules.catch_up + self.rules.last_stop
        following = self.next_night(night.shutdown_at)
        return end if following is None else min(end, following.shutdown_at - self.rules.warning)

    def audit_due(self, now: datetime) -> Night | None:
        """The night whose last window closed in the last AUDIT: was it swept, or missed?"""
        end = self.rules.catch_up + self.rules.last_stop
        return self._within(now, end + timedelta(microseconds=1), end + AUDIT, closed=True)

    def skipped(self, now: datetime) -> tuple[date, str] | None:
        """A day without shutdown whose shutdown time is in the last TICK: (day, why), for one log line."""
        today = self.local_date(now)
        for day in (today - timedelta(days=1), today):
            at = self._wall_instant(day)
            if at <= now < at + TICK and self.shutdown_on(day) is None:
                return day, self.why_no_shutdown(day) or ""
        return None

    def next_night(self, now: datetime) -> Night | None:
        """The first night whose shutdown is still ahead: the one a mail sent now announces."""
        today = self.local_date(now)
        for offset in range(-1, LOOKAHEAD_DAYS):
            night = self.night(today + timedelta(days=offset))
            if night and night.shutdown_at > now:
                return night
        return None

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.rules.zone).date()

    def _within(self, now: datetime, start: timedelta, end: timedelta, closed: bool) -> Night | None:
        """The night whose window [shutdown + start, shutdown + end] holds `now` (end excluded unless
        `closed`). Windows are at most 12 h (+ AUDIT) long, so only the nights of yesterday, today and
        tomorrow can hold `now`, and two nights' windows never overlap (nights are about 24 h apart)."""
        today = self.local_date(now)
        for offset in _AROUND:
            night = self.night(today + offset)
            if night is None:
                continue
            if night.shutdown_at + start <= now and (
                now <= night.shutdown_at + end if closed else now < night.shutdown_at + end
            ):
                return night
        return None


def local_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """`wall` on `day` in `zone`, as a UTC instant: the first occurrence of a repeated time, and the end
    of the gap for a time skipped by a spring-forward change."""
    local = datetime.combine(day, wall, tzinfo=zone)  # fold=0: the first occurrence
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return instant
    # In a gap: walk from the earliest reading of `wall` to the minute the new offset starts.
    after = local.replace(fold=1).utcoffset()
    candidate = local.replace(fold=1).astimezone(UTC)
    while candidate.astimezone(zone).utcoffset() != after:
        candidate += timedelta(minutes=1)
    return candidate
