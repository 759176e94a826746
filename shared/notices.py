"""MailSender: tell the people concerned what the next shutdown will stop, with a keep-it link each.

Every tick asks each workspace's calendar whether a night's warning window is open; if none is, nothing
else happens. Each due workspace's mail run is claimed in the ledger, so however many ticks, hosts or
retries there are, each recipient hears about a workspace's night once. A recipient gets one mail per
tick, covering every due workspace's instances, grouped by workspace. A tick that could not mail
everybody leaves those nights incomplete, and the next tick inside the window mails only those still
waiting. One workspace failing (not found, no permission) never keeps the others' mails back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .announcements import Announcement, announce, compose
from .domain import Night, OutgoingMail
from .errors import CredentialsError, RunFailedError, traceback_if_bug
from .fanout import run_bounded, run_per_group
from .links import LinkSigner
from .nightly import save_progress
from .ports import CancelLedger, ComputeWorkspace, Mailer
from .retry import BACKGROUND, Backpressure, RetryPolicy
from .shutdown_calendar import ShutdownCalendar

log = logging.getLogger(__name__)
SEND_BUDGET = 180.0
LIST_BUDGET = 90.0  # claiming and listing every due workspace, in parallel
WORKSPACES_PER_SUBSCRIPTION = 3  # at a time: ARM throttles per subscription and identity


@dataclass(frozen=True)
class MailOptions:
    cancel_url: str
    subject: str
    to_emails: tuple[str, ...]
    notify_instance_owner: bool = False
    dry_run: bool = False
    max_parallel: int = 16


@dataclass(frozen=True)
class WorkspaceNotice:
    """A workspace to mail about on this tick, if its calendar says so."""

    calendar: ShutdownCalendar
    workspace: ComputeWorkspace
    to_emails: tuple[str, ...]


@dataclass(frozen=True)
class NoticeReport:
    nights: tuple[Night, ...]
    mailed: tuple[str, ...] = ()
    failures: dict[str, str] = field(default_factory=dict)


def send_shutdown_notices(
    now: datetime, calendar: ShutdownCalendar, options: MailOptions, signer: LinkSigner,
    workspace: ComputeWorkspace, ledger: CancelLedger, mailer: Mailer, policy: RetryPolicy = BACKGROUND,
    send_budget: float = SEND_BUDGET,
) -> NoticeReport | None:  # fmt: skip
    """One workspace's mails (a single-workspace deployment)."""
    due = [WorkspaceNotice(calendar, workspace, options.to_emails)]
    return send_notices(now, due, options, signer, ledger, mailer, policy, send_budget)


def send_notices(
    now: datetime, due: Sequence[WorkspaceNotice], options: MailOptions, signer: LinkSigner,
    ledger: CancelLedger, mailer: Mailer, policy: RetryPolicy = BACKGROUND, send_budget: float = SEND_BUDGET,
    failures: dict[str, str] | None = None, named: bool = False,
) -> NoticeReport | None:  # fmt: skip
    """Mails whoever is due; raises RunFailedError (after mailing the rest) if anything failed, including
    the `failures` found before (workspaces that could not be listed). Failures are named with their
    workspace when `named` (a deployment of several workspaces)."""
    failures = dict(failures or {})
    # The warning, and until the main sweep's window closes, a late notice for instances started since.
    nights = [(notice, night) for notice in due if (night := notice.calendar.notice_due(now))]
    if not nights:
        return _finish(failures, None)

    def claim_and_list(item) -> Announcement | None:
        notice, night = item
        return announce(
            now,
            night,
            notice.calendar.rules,
            notice.workspace,
            notice.to_emails,
            options,
            ledger,
            policy,
        )

    outcomes = run_per_group(
        nights, claim_and_list, lambda item: item[1].target.subscription_id.lower(),
        WORKSPACES_PER_SUBSCRIPTION, LIST_BUDGET,
    )  # fmt: skip
    announced: list[Announcement] = []
    for item in nights:  # in the settings' order, whichever finished first
        night, outcome = item[1], outcomes[item]
        if isinstance(outcome, Exception) and not named and not failures:
            raise outcome  # one workspace: its own error, whose type tells monitoring what happened
        if isinstance(outcome, Exception):
            failures[night.target.label] = str(outcome)
            log.error("MailSender for the night of %s in workspace %s: nobody was mailed: %s",
                      night.day, night.target.label, outcome, exc_info=traceback_if_bug(outcome))  # fmt: skip
        elif outcome is not None:
            announced.append(outcome)
            failures.update({_name(named, night, k): why for k, why in outcome.failures.items()})
    if not announced:
        return _finish(failures, None)
    mails = compose(now, announced, options, signer)
    mailed: tuple[str, ...] = ()
    try:
        mailed, send_failures = _send(mails, mailer, options, policy, send_budget)
    except Exception as error:
        for a in announced:
            save_progress(ledger, a.record.progressed((), ("the mail run",)), policy, after_error=True)
        log.error("MailSender: nobody was mailed: %s", error)
        raise
    failures.update(send_failures)
    for a in announced:
        done = tuple(to for to in mailed if to in a.recipients)
        failed = (*a.failures, *(to for to in send_failures if to in a.recipients))
        told = tuple(i.name for to in done for i in a.by_recipient[to])  # the first notice is the one
        save_progress(ledger, a.record.progressed(done, failed).with_noticed(told, now), policy)
        _summarise(a, options, done, failed)
    if len(announced) > 1:
        (log.error if failures else log.info)(
            "MailSender total over %d workspace(s): %s %d recipient(s), failed %d",
            len(nights), "would mail" if options.dry_run else "mailed", len(mailed), len(failures),
        )  # fmt: skip
    return _finish(failures, NoticeReport(tuple(a.night for a in announced), mailed, failures))


def _finish(failures: dict[str, str], report: NoticeReport | None) -> NoticeReport | None:
    if failures:
        raise RunFailedError("MailSender", failures)
    return report


def _name(named: bool, night: Night, key: str) -> str:
    return f"{night.target.label}: {key}" if named else key


def _send(
    mails: list[OutgoingMail], mailer, options, policy, budget
) -> tuple[tuple[str, ...], dict[str, str]]:
    rejected: list[CredentialsError] = []  # once SendGrid refuses the key, every other send would too
    sendgrid = Backpressure()  # a 429 for one mail holds back all of them

    def send(mail: OutgoingMail) -> None:
        if options.dry_run:
            log.info("Dry run: would mail %s about %s", mail.to, ", ".join(mail.instances))
            return
        if rejected:
            raise rejected[0]
        try:
            policy.call(lambda: mailer.send(mail), f"mailing {mail.to}", sendgrid)
        except CredentialsError as error:
            rejected.append(error)
            raise

    outcomes = run_bounded(mails, send, options.max_parallel, budget)
    if rejected:
        raise rejected[0]
    failures = {}
    for mail, result in outcomes.items():
        if isinstance(result, Exception):
            failures[mail.to] = f"not told about {', '.join(mail.instances)}: {result}"
            log.error("Could not mail %s: %s", mail.to, result, exc_info=traceback_if_bug(result))
    mailed = tuple(mail.to for mail, result in outcomes.items() if not isinstance(result, Exception))
    return mailed, failures


def _summarise(a: Announcement, options: MailOptions, mailed, failed) -> None:
    verb = "would mail" if options.dry_run else "mailed"
    (log.error if failed else log.info)(
        "MailSender for the night of %s in workspace %s: %s %d recipient(s) about %d instance(s), "
        "opted out %d, failed %d",
        a.night.day, a.night.target.label, verb, len(mailed), a.running, a.opted_out, len(failed),
    )  # fmt: skip
