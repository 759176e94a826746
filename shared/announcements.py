"""What one workspace's night adds to this tick's warning mails, and the mails themselves: one per
recipient, the instances grouped by workspace, each with its own keep-it link."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from .decisions import announced, mail_subject, opt_outs, plan_mails
from .domain import Instance, Night, NightRecord, OutgoingMail
from .inventory import list_targets
from .links import CancelGrant, LinkSigner, cancel_link
from .nightly import MAIL, claim_night, save_progress
from .ports import CancelLedger, ComputeWorkspace
from .rendering import format_local, relative_day, render
from .retry import RetryPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Announcement:
    """One workspace's night, claimed and listed: whom to tell about which instances."""

    night: Night
    zone: tzinfo  # the workspace's time zone, for the times in the mail
    record: NightRecord
    by_recipient: dict[str, tuple[Instance, ...]]  # only those not mailed yet tonight
    left_alone: dict[str, int]  # per recipient, instances opted out by their tag
    running: int
    opted_out: int
    failures: dict[str, str]  # instances named in the settings the workspace does not have

    @property
    def recipients(self) -> frozenset[str]:
        return frozenset(self.by_recipient)


def announce(
    now: datetime, night: Night, zone: tzinfo, workspace: ComputeWorkspace, to_emails: tuple[str, ...],
    options, ledger: CancelLedger, policy: RetryPolicy,
) -> Announcement | None:  # fmt: skip
    """Claim the night's mail run and list the workspace; None if another run has it or it is done."""
    record = claim_night(ledger, night, MAIL, now, policy)
    if record is None:
        return None
    try:
        targets = list_targets(workspace, night.target.instances, policy)
    except Exception as error:
        save_progress(ledger, record.progressed((), (str(error),)), policy, after_error=True)
        raise
    out = opt_outs(targets.instances, night.target.opt_out_tag, night.day)
    for warning in out.warnings:
        log.warning("MailSender: %s", warning)
    running = announced(i for i in targets.instances if i not in out.instances)
    plan = plan_mails(running, to_emails, options.notify_instance_owner)
    left_alone = plan_mails(announced(out.instances), to_emails, options.notify_instance_owner)
    return Announcement(
        night, zone, record,
        {to: items for to, items in plan.by_recipient.items() if to not in record.done},
        {to: len(items) for to, items in left_alone.by_recipient.items()},
        len(running), len(out.instances),
        {name: "not found in the workspace" for name in targets.missing},
    )  # fmt: skip


def compose(now: datetime, parts: Sequence[Announcement], options, signer: LinkSigner) -> list[OutgoingMail]:
    """One mail per recipient, covering every workspace that has instances to tell them about."""
    recipients = dict.fromkeys(to for a in parts for to in a.by_recipient)
    return [_mail(now, to, [a for a in parts if to in a.by_recipient], options, signer) for to in recipients]


def link_for(cancel_url: str, signer: LinkSigner, night: Night, instance: str, recipient: str) -> str:
    """The link of one instance in one recipient's mail (the same link again in a reminder)."""
    grant = CancelGrant(night.target.arm_id, instance, night.day, night.shutdown_at, recipient.lower())
    return cancel_link(cancel_url, signer.sign(grant))


def _mail(now: datetime, to: str, parts: list[Announcement], options, signer: LinkSigner) -> OutgoingMail:
    groups = [_group(now, to, a, options, signer) for a in parts]
    names = tuple(item["name"] for group in groups for item in group["items"])
    whens = {group["when"] for group in groups}
    subject = mail_subject(options.subject, names)
    context = dict(
        subject=subject,
        count=len(names),
        when=whens.pop() if len(whens) == 1 else "",
        groups=groups,
    )
    return OutgoingMail(to, subject, render("mail.txt", **context), render("mail.html", **context), names)


def _group(now: datetime, to: str, a: Announcement, options, signer: LinkSigner) -> dict:
    night, zone = a.night, a.zone
    return dict(
        workspace=night.target.name,
        resource_group=night.target.resource_group,
        shutdown_time=format_local(night.shutdown_at, zone),
        when=relative_day(night.shutdown_at, now, zone),
        items=[
            {
                "name": i.name,
                "note": _note(i),
                "link": link_for(options.cancel_url, signer, night, i.name, to),
            }
            for i in a.by_recipient[to]
        ],
        opted_out=a.left_alone.get(to, 0),
        opt_out_tag=night.target.opt_out_tag,
    )


def _note(instance: Instance) -> str:
    if instance.is_busy:
        return "running a job now; stopped only if the job has finished by then"
    return "running now"
