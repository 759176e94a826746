"""MailSender: tell the people concerned what tonight's shutdown will stop, with a keep-it link each."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from .decisions import announced, mail_subject, plan_mails
from .domain import Instance, OutgoingMail
from .errors import CredentialsError, RunFailedError, traceback_if_bug
from .fanout import run_bounded
from .inventory import list_targets
from .links import CancelGrant, LinkSigner, cancel_link
from .ports import ComputeWorkspace, Mailer
from .rendering import format_local, render
from .retry import BACKGROUND, Backpressure, RetryPolicy
from .settings import Settings

log = logging.getLogger(__name__)
SEND_BUDGET = 180.0


@dataclass(frozen=True)
class NoticeReport:
    day: date
    mailed: tuple[str, ...] = ()
    failures: dict[str, str] = field(default_factory=dict)


def send_shutdown_notices(
    settings: Settings,
    workspace: ComputeWorkspace,
    mailer: Mailer,
    now: datetime,
    policy: RetryPolicy = BACKGROUND,
    send_budget: float = SEND_BUDGET,
) -> NoticeReport:
    """Mails every recipient once; raises RunFailedError (after mailing the rest) if anything failed."""
    shutdown_at, day = settings.next_shutdown(now)
    targets = list_targets(workspace, settings.instances, policy)
    instances = announced(targets.instances)
    plan = plan_mails(instances, settings.to_emails, settings.notify_instance_owner)
    links = _links(settings, instances, day, shutdown_at)
    mails = [_compose(settings, to, items, links, shutdown_at) for to, items in plan.by_recipient.items()]
    if not mails:
        log.info("MailSender for the night of %s: no running instance to announce", day)

    rejected: list[CredentialsError] = []  # once SendGrid refuses the key, every other send would too
    sendgrid = Backpressure()  # a 429 for one mail holds back all of them

    def send(mail: OutgoingMail) -> None:
        if settings.dry_run:
            log.info("Dry run: would mail %s about %s", mail.to, ", ".join(mail.instances))
            return
        if rejected:
            raise rejected[0]
        try:
            policy.call(lambda: mailer.send(mail), f"mailing {mail.to}", sendgrid)
        except CredentialsError as error:
            rejected.append(error)
            raise

    outcomes = run_bounded(mails, send, settings.max_parallel, send_budget)
    if rejected:
        log.error("MailSender for the night of %s: nobody was mailed: %s", day, rejected[0])
        raise rejected[0]
    failures = {name: "not found in the workspace" for name in targets.missing}
    for mail, result in outcomes.items():
        if isinstance(result, Exception):
            failures[mail.to] = f"not told about {', '.join(mail.instances)}: {result}"
            log.error("Could not mail %s: %s", mail.to, result, exc_info=traceback_if_bug(result))
    mailed = tuple(mail.to for mail, result in outcomes.items() if not isinstance(result, Exception))
    verb = "would mail" if settings.dry_run else "mailed"
    (log.error if failures else log.info)(
        "MailSender for the night of %s: %s %d recipient(s) about %d instance(s), failed %d",
        day, verb, len(mailed), len(instances), len(failures),
    )  # fmt: skip
    if failures:
        raise RunFailedError("MailSender", failures)
    return NoticeReport(day, mailed, failures)


def _links(settings: Settings, instances: tuple[Instance, ...], day: date, at: datetime) -> dict[str, str]:
    signer = LinkSigner(settings.cancel_link_secret)
    return {
        i.name: cancel_link(
            settings.cancel_url, signer.sign(CancelGrant(settings.workspace, i.name, day, at))
        )
        for i in instances
    }


def _compose(
    settings: Settings, to: str, instances: tuple[Instance, ...], links: dict[str, str], at: datetime
) -> OutgoingMail:
    names = tuple(i.name for i in instances)
    subject = mail_subject(settings.subject, names)
    context = dict(
        subject=subject,
        workspace=settings.workspace,
        shutdown_time=format_local(at, settings.time_zone),
        count=len(instances),
        items=[{"name": i.name, "note": _note(i), "link": links[i.name]} for i in instances],
    )
    return OutgoingMail(to, subject, render("mail.txt", **context), render("mail.html", **context), names)


def _note(instance: Instance) -> str:
    if instance.is_busy:
        return "running a job now; stopped tonight only if the job has finished by then"
    return "running now"
