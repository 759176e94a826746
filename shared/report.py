"""The morning-after report: after a night's sweeps have finished in every workspace (or the last one's
window has closed), one mail to `report_emails` with what was stopped, kept and why, and the saving.

A ComputeShutdown tick asks this after its sweeps. A report day is a local date: the night of 24
November is Tokyo's, Berlin's and New York's 24 November, hours apart in UTC, and its report goes out
after the last of them. Only ticks inside one of that date's sweep windows, or in the hour after the
last one closed, make a remote call for it. The report is claimed in the ledger like a night's
mail run, so it goes out once, whatever the ticks, hosts and retries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from .domain import Attachment, Night, OutgoingMail, WorkspaceTarget
from .errors import RunFailedError, traceback_if_bug
from .estate import Estate, Managed
from .night_rows import priced
from .nightly import claim_night, save_progress
from .ports import CancelLedger, Mailer, PriceList, WorkspaceDirectory
from .rendering import format_local, render
from .report_view import WorkspaceNight, describe, problems, to_csv, totals
from .retry import RetryPolicy
from .shutdown_calendar import AUDIT, ShutdownCalendar

log = logging.getLogger(__name__)
REPORT = "report"
# The report's own ledger records, one per local date, beside the workspaces' nights.
REPORT_TARGET = WorkspaceTarget("report", "every-workspace", "night")


@dataclass(frozen=True)
class ReportOptions:
    recipients: tuple[str, ...]
    currency: str = "USD"
    dry_run: bool = False


def report_day(now: datetime, calendars: Sequence[ShutdownCalendar]) -> tuple[date, datetime] | None:
    """The local date whose report may be due now, and when its last sweep window closes. It is asked
    for only while one of that date's sweep windows is open (a sweep may just have finished) and for
    AUDIT after the last one closed: between windows, no tick reads anything for the report."""
    days = sorted({c.local_date(now) + timedelta(days=d) for c in calendars for d in (-1, 0)})
    for day in days:
        windows = [
            (n.shutdown_at, n.shutdown_at + c.rules.catch_up + c.rules.last_stop)
            for c in calendars
            if (n := c.night(day))
        ]
        if not windows:
            continue
        closes = max(end for _, end in windows)
        if any(start <= now <= end for start, end in windows) or closes <= now <= closes + AUDIT:
            return day, closes
    return None


def send_report(
    now: datetime, estate: Estate, options: ReportOptions, directory: WorkspaceDirectory, ledger: CancelLedger,
    mailer: Mailer, prices: PriceList | None, policy: RetryPolicy,
) -> OutgoingMail | None:  # fmt: skip
    """Sends the report that is due, if any; RunFailedError if it could not be sent (a later tick retries)."""
    if not options.recipients:
        return None
    due = report_day(now, estate.calendars())
    if due is None:
        return None  # the common case: no remote call at all
    day, closes = due
    report_night = Night(REPORT_TARGET, day, datetime.combine(day, time(), UTC))
    record = policy.call(lambda: ledger.night_record(report_night, REPORT), "reading the report's record")
    if record is not None and record.finished:
        return None
    # Every workspace, those without a shutdown that day too: the month's totals are the estate's.
    managed, unlisted = estate.due(lambda c: True, directory, policy)
    sweeps = {m.target.key: _sweep_record(m, day, ledger, policy) for m in managed if m.calendar.night(day)}
    if now <= closes and not all(r is not None and r.finished for r in sweeps.values()):
        return None  # a sweep still runs (or delayed stops wait): the report waits for it
    record = claim_night(ledger, report_night, REPORT, now, policy)
    if record is None:
        return None
    try:
        parts = [_part(m, day, sweeps.get(m.target.key), ledger, prices, options, policy) for m in managed]
        mail = compose(day, parts, unlisted, options)
        for to in options.recipients:
            if to not in record.done:
                _send(replace(mail, to=to), mailer, options, policy)
                record = replace(record, done=(*record.done, to))
    except Exception as error:
        save_progress(ledger, record.progressed(record.done, ("the report",)), policy, after_error=True)
        log.error(
            "The report for the night of %s was not sent: %s", day, error, exc_info=traceback_if_bug(error)
        )
        raise RunFailedError("ComputeShutdown", {f"the report for the night of {day}": str(error)}) from None
    save_progress(ledger, record.progressed(record.done, ()), policy)
    money, unpriced, stops = totals(parts)["night"]
    log.info("Report for the night of %s sent to %d recipient(s): %d stop(s), saving %.2f %s%s", day,
             len(options.recipients), stops, money, options.currency,
             f" + {unpriced:g} h unpriced" if unpriced else "")  # fmt: skip
    return mail


def compose(
    day: date, parts: list[WorkspaceNight], unlisted: dict[str, str], options: ReportOptions
) -> OutgoingMail:
    figures = totals(parts)
    context = dict(
        subject=f"Auto-shutdown report for the night of {day:%A} {day.day} {day:%B %Y}",
        day=day,
        currency=options.currency,
        problems=[*(f"{entry}: {why}" for entry, why in unlisted.items()), *problems(parts)],
        night=figures["night"],
        month=figures["month"],
        previous=figures["previous"],
        month_name=f"{day:%B}",
        previous_name=f"{(day.replace(day=1) - timedelta(days=1)):%B}",
        workspaces=[_workspace(part) for part in parts],
        unpriced=sorted(
            {
                f"{r.size or 'size unknown'} in {r.region or 'region unknown'}"
                for p in parts
                for r in p.rows
                if r.outcome == "stopped" and r.saving is None
            }
        ),
        dry_run=options.dry_run,
    )
    csv_name = f"auto-shutdown-{day:%Y-%m}-to-{day.isoformat()}.csv"
    attachment = Attachment(csv_name, "text/csv", to_csv(parts, options.currency))
    return OutgoingMail(
        "", context["subject"], render("report.txt", **context), render("report.html", **context),
        attachments=(attachment,),
    )  # fmt: skip


def _workspace(part: WorkspaceNight) -> dict:
    figures = totals([part])
    return dict(
        name=part.target.name,
        resource_group=part.target.resource_group,
        shutdown=format_local(part.shutdown_at, part.zone) if part.shutdown_at else "",
        skipped=part.skipped,
        night=figures["night"],
        month=figures["month"],
        previous=figures["previous"],
        rows=[
            {"instance": r.instance, "size": r.size or "", "what": describe(r, part.zone), "outcome": r.outcome,
             "hours": r.hours, "saving": r.saving}
            for r in part.rows
        ],
    )  # fmt: skip


def _sweep_record(managed: Managed, day: date, ledger: CancelLedger, policy: RetryPolicy):
    night = managed.calendar.night(day)
    return policy.call(lambda: ledger.night_record(night, "sweep"), "reading the night's sweep record")


def _part(managed: Managed, day: date, sweep, ledger, prices, options, policy) -> WorkspaceNight:
    calendar, target = managed.calendar, managed.target
    first = day.replace(day=1)
    before = (first - timedelta(days=1)).replace(day=1)
    month = policy.call(lambda: ledger.outcomes(target, first, day), "reading the month's rows")
    previous = policy.call(
        lambda: ledger.outcomes(target, before, first - timedelta(days=1)), "reading last month's rows"
    )
    month = {
        d: priced(rows, prices, options.currency, policy) if _unpriced(rows) else rows
        for d, rows in month.items()
    }
    night = calendar.night(day)
    return WorkspaceNight(
        target, calendar.rules.zone, day, night.shutdown_at if night else None,
        calendar.why_no_shutdown(day) or "", sweep.state if sweep else "", sweep.failures if sweep else (),
        month, previous,
    )  # fmt: skip


def _unpriced(rows) -> bool:
    return any(r.saving is None and r.hours for r in rows)


def _send(mail: OutgoingMail, mailer: Mailer, options: ReportOptions, policy: RetryPolicy) -> None:
    if options.dry_run:
        log.info("Dry run: would mail the report to %s", mail.to)
        return
    policy.call(lambda: mailer.send(mail), f"mailing the report to {mail.to}")
