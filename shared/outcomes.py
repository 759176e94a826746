"""What happened to each instance on a night: the rows the ledger keeps for the morning-after report.

One row per targeted instance and night, written by the night's sweep (and updated by a delayed stop):
stopped (when, hours until work starts, the saving), kept all night or delayed (until when, by whose
link), busy with a job, opted out by tag, not running, restarted after the stop, or failed (why).
Nights without a sweep are not rows: a skipped day is the calendar's, a missed night its sweep record's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, time

from .domain import Keep, Night, StopOutcome
from .savings import saving, stopped_hours
from .shutdown_calendar import ShutdownCalendar
from .sweep_report import SweepReport

STOPPED, KEPT, DELAYED, BUSY = "stopped", "kept", "delayed", "busy with a job"
OPTED_OUT, NOT_RUNNING, RESTARTED, FAILED = "opted out", "not running", "restarted after the stop", "failed"
LATE_NOTICE = "held for its notice"  # started after the mail: told late, stopped after the minimum notice
OUTCOMES = (
    STOPPED,
    DELAYED,
    LATE_NOTICE,
    KEPT,
    BUSY,
    OPTED_OUT,
    NOT_RUNNING,
    RESTARTED,
    FAILED,
)  # the report's order


@dataclass(frozen=True)
class InstanceNight:
    instance: str
    outcome: str  # one of OUTCOMES
    size: str | None = None
    region: str | None = None
    stopped_at: datetime | None = None
    kept_until: datetime | None = None  # delayed: the stop time chosen (kept: None, all night)
    kept_by: str = ""  # the recipient whose link kept or delayed it
    detail: str = ""  # why it failed
    hours: float = 0.0  # how long it stays stopped until work starts (stops only)
    saving: float | None = None  # hours x hourly list price; None while the price is unknown

    def priced(self, hourly_price: float | None) -> InstanceNight:
        return replace(self, saving=saving(self.hours, hourly_price)) if self.outcome == STOPPED else self


def night_outcomes(
    report: SweepReport, keeps: dict[str, Keep], calendar: ShutdownCalendar, workday_start: time,
    stopped_at: datetime,
) -> list[InstanceNight]:  # fmt: skip
    """The rows of a night's main sweep (before pricing)."""
    night, plan = report.night, report.plan
    by_name = {i.name.lower(): i for group in vars(plan).values() for i in group}
    keep_of = {name.lower(): keep for name, keep in keeps.items()}
    rows = []

    def row(name: str, outcome: str, **values) -> None:
        instance = by_name.get(name.lower())
        size, region = (instance.size, instance.region) if instance else (None, None)
        rows.append(InstanceNight(name, outcome, size, region, **values))

    for name in report.stopped:
        row(name, STOPPED, stopped_at=stopped_at, hours=_hours(calendar, night, stopped_at, workday_start))
    for instance in plan.kept:
        keep = keep_of.get(instance.name.lower())
        until = keep.until if keep else None
        if keep is not None and keep.is_hold:
            row(instance.name, LATE_NOTICE, kept_until=until)
            continue
        row(
            instance.name,
            DELAYED if until else KEPT,
            kept_until=until,
            kept_by=keep.recipient if keep else "",
        )
    for name, result in report.outcomes.items():
        if result is StopOutcome.BUSY:
            row(name, BUSY)
        elif result is StopOutcome.NOT_RUNNING:
            row(name, NOT_RUNNING)
    for group, outcome in ((plan.busy, BUSY), (plan.not_running, NOT_RUNNING), (plan.opted_out, OPTED_OUT),
                           (plan.stopped_before, RESTARTED)):  # fmt: skip
        for instance in group:
            row(instance.name, outcome)
    for name, why in report.failures.items():
        row(name, FAILED, detail=why)
    return rows


def delayed_stop(
    row: InstanceNight, calendar: ShutdownCalendar, night: Night, at: datetime, workday_start: time
):
    """A delayed instance's row once it has been stopped at `at`."""
    return replace(row, outcome=STOPPED, stopped_at=at, hours=_hours(calendar, night, at, workday_start))


def total_saving(rows: Iterable[InstanceNight]) -> tuple[float, float, int]:
    """(money saved by the priced stops, hours of the stops without a price, how many stops)."""
    stops = [r for r in rows if r.outcome == STOPPED]
    money = round(sum(r.saving for r in stops if r.saving is not None), 2)
    unpriced = round(sum(r.hours for r in stops if r.saving is None), 2)
    return money, unpriced, len(stops)


def _hours(calendar: ShutdownCalendar, night: Night, at: datetime, workday_start: time) -> float:
    return round(stopped_hours(calendar, night.day, at, workday_start), 2)
