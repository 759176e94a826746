"""MailSender: tell the people concerned what the next shutdown will stop, with a keep-it link each.

Every tick asks the calendar whether a night's warning window is open; if not, nothing else happens.
The night's mail run is claimed in the ledger, so however many ticks, hosts or retries there are,
each recipient gets one mail per night. A tick that could not mail everybody leaves the night
incomplete, and the next tick inside the window mails only those still waiting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from .decisions import announced, mail_subject, opt_outs, plan_mails
from .domain import Instance, Night, OutgoingMail
from .errors import CredentialsError, RunFailedError, traceback_if_bug
from .fanout import run_bounded
from .inventory import list_targets
from .links import CancelGrant, LinkSigner, cancel_link
from .nightly import MAIL, claim_night, save_progress
from .ports import CancelLedger, ComputeWorkspace, Mailer
from .rendering import format_local, relative_day, render
from .retry import BACKGROUND, Backpressure, RetryPolicy
from .shutdown_calendar import ShutdownCalendar

log = logging.getLogger(__name__)
SEND_BUDGET = 180.0


@dataclass(frozen=True)
class MailOptions:
    cancel_url: str
    subject: str
    to_emails: tuple[str, ...]
    notify_instance_owner: bool = False
    dry_run: bool = False
    max_parallel: int = 16


@dataclass(frozen=True)
class NoticeReport:
    night: Night
    mailed: tuple[str, ...] = ()
    failures: dict[str, str] = field(default_factory=dict)


def send_shutdown_notices(
    now: datetime,
    calendar: ShutdownCalendar,
    options: MailOptions,
    signer: LinkSigner,
    workspace: ComputeWorkspace,
    ledger: CancelLedger,
    mailer: Mailer,
    policy: RetryPolicy = BACKGROUND,
    send_budget: float = SEND_BUDGET,
) -> NoticeReport | None:
    """Mails the night that is due, if any; raises RunFailedError (after mailing the rest) on failures."""
    night = calendar.mail_due(now)
    if night is None:
        return None  # the common case: no remote call at all
    record = claim_night(ledger, night, MAIL, now, policy)
    if record is None:
        return None
    failures: dict[str, str] = {}
    mailed: tuple[str, ...] = ()
    try:
        targets = list_targets(workspace, night.target.instances, policy)
        failures.update({name: "not found in the workspace" for name in targets.missing})
        out = opt_outs(targets.instances, night.target.opt_out_tag, night.day)
        for warning in out.warnings:
            log.warning("MailSender: %s", warning)
        running = announced(i for i in targets.instances if i not in out.instances)
        plan = plan_mails(running, options.to_emails, options.notify_instance_owner)
        left_alone = plan_mails(announced(out.instances), options.to_emails, options.notify_instance_owner)
        zone = calendar.rules.zone
        mails = [
            _compose(options, night, now, zone, to, items, signer, len(left_alone.by_recipient.get(to, ())))
            for to, items in plan.by_recipient.items()
            if to not in record.done
        ]
        mailed, send_failures = _send(mails, mailer, options, policy, send_budget, night)
        failures.update(send_failures)
        _summarise(night, options, mailed, running, out.instances, failures)
    except Exception as error:
        failures.setdefault("the mail run", str(error))
        save_progress(ledger, record.progressed(mailed, tuple(failures)), policy, after_error=True)
        raise
    save_progress(ledger, record.progressed(mailed, tuple(failures)), policy)
    if failures:
        raise RunFailedError("MailSender", failures)
    return NoticeReport(night, mailed, failures)


def _send(mails, mailer, options, policy, budget, night) -> tuple[tuple[str, ...], dict[str, str]]:
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
        log.error("MailSender for the night of %s: nobody was mailed: %s", night.day, rejected[0])
        raise rejected[0]
    failures = {}
    for mail, result in outcomes.items():
        if isinstance(result, Exception):
            failures[mail.to] = f"not told about {', '.join(mail.instances)}: {result}"
            log.error("Could not mail %s: %s", mail.to, result, exc_info=traceback_if_bug(result))
    mailed = tuple(mail.to for mail, result in outcomes.items() if not isinstance(result, Exception))
    return mailed, failures


def _summarise(night, options, mailed, running, opted_out, failures) -> None:
    verb = "would mail" if options.dry_run else "mailed"
    (log.error if failures else log.info)(
        "MailSender for the night of %s: %s %d recipient(s) about %d instance(s), opted out %d, failed %d",
        night.day, verb, len(mailed), len(running), len(opted_out), len(failures),
    )  # fmt: skip


def link_for(cancel_url: str, signer: LinkSigner, night: Night, instance: str, recipient: str) -> str:
    """The link of one instance in one recipient's mail (the same link again in a reminder)."""
    grant = CancelGrant(night.target.arm_id, instance, night.day, night.shutdown_at, recipient.lower())
    return cancel_link(cancel_url, signer.sign(grant))


def _compose(
    options, night, now, zone, to, instances: tuple[Instance, ...], signer, opted_out
) -> OutgoingMail:
    names = tuple(i.name for i in instances)
    subject = mail_subject(options.subject, names)
    context = dict(
        subject=subject,
        workspace=night.target.name,
        shutdown_time=format_local(night.shutdown_at, zone),
        when=relative_day(night.shutdown_at, now, zone),
        count=len(instances),
        items=[
            {
                "name": i.name,
                "note": _note(i),
                "link": link_for(options.cancel_url, signer, night, i.name, to),
            }
            for i in instances
        ],
        opted_out=opted_out,
        opt_out_tag=night.target.opt_out_tag,
    )
    return OutgoingMail(to, subject, render("mail.txt", **context), render("mail.html", **context), names)


def _note(instance: Instance) -> str:
    if instance.is_busy:
        return "running a job now; stopped only if the job has finished by then"
    return "running now"
