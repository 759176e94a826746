"""Fire timer functions on their six-field NCRONTAB schedules, as the Functions host does.

Schedules are read in UTC, or in the zone named by `TZ` if set (the host's behaviour on Linux).
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime, timedelta, tzinfo

from croniter import croniter

from shared import setting_rules

from . import invoke
from .functions import Function

log = logging.getLogger("Host.Timers")
PAST_DUE_AFTER = 60.0  # seconds late before an occurrence counts as past due


def schedule_zone() -> tzinfo:
    """The zone schedules are read in: `TZ` (parsed as the app parses it), UTC if unset or blank.

    A bad value is a ValueError naming TZ, for the one-line "Cannot start: ..." message.
    """
    value = os.environ.get("TZ", "")
    if not value.strip():
        return UTC
    try:
        return setting_rules.time_zone(value)
    except ValueError as problem:
        raise ValueError(f"TZ {problem}") from None


class TimerScheduler:
    def __init__(self, functions: list[Function]):
        self.timers = [(f, f.schedule()) for f in functions if f.kind == "timerTrigger"]
        self.zone = schedule_zone()
        self._stop = threading.Event()
        for function, schedule in self.timers:
            if not croniter.is_valid(schedule, second_at_beginning=True) or len(schedule.split()) != 6:
                raise ValueError(f"{function.name}: {schedule!r} is not a six-field NCRONTAB expression")

    def next_runs(self) -> dict[str, datetime]:
        now = datetime.now(self.zone)
        return {f.name: self._next(s, now) for f, s in self.timers}

    def start(self) -> None:
        for function, schedule in self.timers:
            threading.Thread(
                target=self._loop, args=(function, schedule), daemon=True, name=function.name
            ).start()

    def stop(self) -> None:
        self._stop.set()

    def run_at_or_after(self, name: str, instant: datetime) -> datetime:
        """When the timer `name` next fires at or after `instant` (a tick exactly at `instant` counts)."""
        schedule = next(s for f, s in self.timers if f.name == name)
        return self._next(schedule, instant.astimezone(self.zone) - timedelta(microseconds=1))

    def _loop(self, function: Function, schedule: str) -> None:
        due = self._next(schedule, datetime.now(self.zone))
        while not self._stop.wait(max(0.0, (due - datetime.now(self.zone)).total_seconds())):
            if datetime.now(self.zone) < due:
                continue  # the wait runs on the monotonic clock: never fire before the wall clock says so
            late = (datetime.now(self.zone) - due).total_seconds()
            invoke.run_timer(function, "Timer fired", past_due=late > PAST_DUE_AFTER, schedule=schedule)
            due = self._next(schedule, datetime.now(self.zone))
            log.info("Next run of %s: %s", function.name, due.isoformat())

    def _next(self, schedule: str, after: datetime) -> datetime:
        return croniter(schedule, after, second_at_beginning=True).get_next(datetime)
