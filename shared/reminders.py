"""MailSender, later in the night: a short reminder `reminder_minutes` before a delayed stop, to the
recipient whose link delayed it, with the same link (to keep it longer still).

One reminder per stop time: the keep remembers the stop time its reminder was for, so a later click
that moves the time gets a reminder of its own. The mail goes out first and is recorded after, so a
send that fails is retried by the next tick; a record that fails after a send may repeat the mail once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .announcements import link_for
from .domain import Keep, Night, OutgoingMail
from .errors import RunFailedError, traceback_if_bug
from .links import LinkSigner
from .ports import CancelLedger, Mailer
from .rendering import format_local, render
from .retry import RetryPolicy
from .shutdown_calendar import ShutdownCalendar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReminderOptions:
    cancel_url: str
    minutes: int = 15  # 0: no reminders
    dry_run: bool = False


def remind_everyone(
    now: datetime, calendars: Sequence[ShutdownCalendar], options: ReminderOptions, signer: LinkSigner,
    ledger: CancelLedger, mailer: Mailer, policy: RetryPolicy, named: bool = False,
) -> tuple[str, ...]:  # fmt: skip
    """`send_reminders` for each workspace; one failing never keeps the others' reminders back."""
    reminded: list[str] = []
    failures: dict[str, str] = {}
    for calendar in calendars:
        try:
            reminded += send_reminders(now, calendar, options, signer, ledger, mailer, policy)
        except RunFailedError as error:
            failures.update(_named(named, calendar, error.failures))
        except Exception as error:
            failures[calendar.target.label] = f"reminders not sent: {error}"
            log.error("Reminders for workspace %s: %s", calendar.target.label, error,
                      exc_info=traceback_if_bug(error))  # fmt: skip
    if failures:
        raise RunFailedError("MailSender", failures)
    return tuple(reminded)


def _named(named: bool, calendar, failures: dict[str, str]) -> dict[str, str]:
    if not named:
        return failures
    return {f"{calendar.target.label}: {name}": why for name, why in failures.items()}


def send_reminders(
    now: datetime, calendar: ShutdownCalendar, options: ReminderOptions, signer: LinkSigner,
    ledger: CancelLedger, mailer: Mailer, policy: RetryPolicy,
) -> tuple[str, ...]:  # fmt: skip
    """Reminds whoever is due; returns the instances reminded. RunFailedError if a reminder failed."""
    before = timedelta(minutes=options.minutes)
    night = calendar.reminder_due(now, before)
    if night is None:
        return ()
    keeps = policy.call(lambda: ledger.kept_instances(night), "reading the keeps in force")
    due = [k for k in keeps.values() if _due(k, now, before)]
    failures: dict[str, str] = {}
    reminded = []
    for keep in due:
        mail = _compose(night, keep, now, calendar, options, signer)
        try:
            if options.dry_run:
                log.info(
                    "Dry run: would remind %s that %s stops at %s", keep.recipient, keep.instance, keep.until
                )
            else:
                policy.call(lambda mail=mail: mailer.send(mail), f"reminding {keep.recipient}")
            policy.call(
                lambda keep=keep: ledger.mark(night, keep, reminded=True),
                f"recording the reminder for {keep.instance}",
            )
            reminded.append(keep.instance)
        except Exception as error:
            failures[keep.instance] = f"reminder to {keep.recipient} not sent: {error}"
            log.error("Could not remind %s: %s", keep.recipient, error, exc_info=traceback_if_bug(error))
    if reminded or failures:
        (log.error if failures else log.info)(
            "MailSender for the night of %s: reminded %d recipient(s) of a delayed stop, failed %d",
            night.day, len(reminded), len(failures),
        )  # fmt: skip
    if failures:
        raise RunFailedError("MailSender", failures)
    return tuple(reminded)


def _due(keep: Keep, now: datetime, before: timedelta) -> bool:
    return (
        keep.until is not None and bool(keep.recipient) and not keep.is_hold and not keep.stopping
        and keep.until - before <= now < keep.until and keep.reminded_for != keep.until
    )  # fmt: skip


def _compose(night: Night, keep: Keep, now, calendar, options: ReminderOptions, signer) -> OutgoingMail:
    zone = calendar.rules.zone
    minutes = max(1, round((keep.until - now).total_seconds() / 60))
    subject = f"{keep.instance} stops at {keep.until.astimezone(zone):%H:%M}"
    context = dict(
        subject=subject,
        instance=keep.instance,
        workspace=night.target.name,
        stop_time=format_local(keep.until, zone),
        minutes=minutes,
        link=link_for(options.cancel_url, signer, night, keep.instance, keep.recipient),
    )
    html, text = render("reminder.html", **context), render("reminder.txt", **context)
    return OutgoingMail(keep.recipient, subject, text, html, (keep.instance,))
