"""Minimum notice: no instance is stopped unless the people concerned were told about it at least
`minimum_notice_minutes` before the stop.

The night's mail record keeps when each instance was first told about (the warning mail, or a late
notice for one started after it). A stop that is due for an instance told too recently, or not at all
yet, waits: the sweep *holds* it, as a keep of its own (recipient NOTICE_HOLD) until its notice has
run. A hold is a keep like any other: the sweep honours it, stops it on the first tick at or after its
time (through the same ETag mark a click is ordered by), and a click on the late notice's link moves it
later (the latest stop time wins).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .domain import NOTICE_HOLD, Cancellation, Keep, Night, NightRecord
from .nightly import MAIL
from .ports import CancelLedger
from .retry import RetryPolicy
from .shutdown_calendar import TICK


@dataclass(frozen=True)
class Notices:
    """Who was told about what this night, and whether an instance may be stopped at `now`."""

    told: NightRecord | None  # the night's mail record
    minimum: timedelta
    now: datetime

    def ready(self, instance: str) -> bool:
        at = self.told.noticed_at(instance) if self.told else None
        return at is not None and at + self.minimum <= self.now

    def until(self, instance: str) -> datetime:
        """When its notice will have run; for one not told yet, a tick after the minimum from now (the
        next MailSender tick tells it, and the stop waits for that notice's own time then)."""
        at = self.told.noticed_at(instance) if self.told else None
        return at + self.minimum if at is not None else self.now + max(self.minimum, TICK)


def read_notices(
    ledger: CancelLedger, night: Night, minimum: timedelta, now: datetime, policy: RetryPolicy
) -> Notices:
    told = policy.call(lambda: ledger.night_record(night, MAIL), "reading who was told about what")
    return Notices(told, minimum, now)


def hold(
    ledger: CancelLedger, night: Night, instances: list[str], notices: Notices, policy: RetryPolicy
) -> dict[str, Keep]:
    """Keep each instance running until its notice has run; returns the keeps now in force (a click may
    have asked for longer already, or for all night)."""
    held = {}
    for name in instances:
        wish = Cancellation(
            night.target.arm_id,
            name,
            night.day,
            notices.now,
            until=notices.until(name),
            recipient=NOTICE_HOLD,
        )
        _, held[name] = policy.call(
            lambda wish=wish: ledger.record(night, wish), f"holding {name} for its notice"
        )
    return held
