"""What one workspace's night adds to this tick's warning mails, and the mails themselves: one per
recipient, the instances grouped by workspace, each with its own keep-it link."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from .decisions import announced, mail_subject, opt_outs, plan_mails
from .domain import Instance, Night, NightRecord, OutgoingMail
from .inventory import list_targets
from .links import CancelGrant, LinkSigner, cancel_link
from .nightly import LEASE, MAIL, SWEEP, save_progress
from .ports import CancelLedger, ComputeWorkspace
from .rendering import format_local, relative_day, render
from .retry import RetryPolicy
from .shutdown_calendar import CalendarRules

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Announcement:
    """One workspace's night, claimed and listed: whom to tell about which instances."""

    night: Night
    zone: tzinfo  # the workspace's time zone, for the times in the mail
    record: NightRecord
    by_recipient: dict[str, tuple[Instance, ...]]  # only what each has not been told yet tonight
    left_alone: dict[str, int]  # per recipient, instances opted out by their tag
    running: int
    opted_out: int
    failures: dict[str, str]  # instances named in the settings the workspace does not have
    stops_at: dict[str, datetime] = field(default_factory=dict)  # told late: stopped then, not before
    notice: timedelta = timedelta(0)  # the workspace's minimum_notice_minutes

    @property
    def recipients(self) -> frozenset[str]:
        return frozenset(self.by_recipient)


def announce(
    now: datetime, night: Night, rules: CalendarRules, workspace: ComputeWorkspace, to_emails: tuple[str, ...],
    options, ledger: CancelLedger, policy: RetryPolicy,
) -> Announcement | None:  # fmt: skip
    """What the night's mail run still has to tell, claimed; None if nothing (or another run has it).

    The first run tells everybody about every instance. Later ticks, until the main sweep's window
    closes, tell only about instances nobody was told about yet (started after the mail), each with its
    own stop time: `minimum_notice` after this notice, and never before the shutdown. Once the sweep
    has run, only the instances it holds for such a notice are worth one."""
    record = policy.call(lambda: ledger.night_record(night, MAIL), "reading the night's mail record")
    targets = list_targets(workspace, night.target.instances, policy)
    out = opt_outs(targets.instances, night.target.opt_out_tag, night.day)
    for warning in out.warnings:
        log.warning("MailSender: %s", warning)
    running = announced(i for i in targets.instances if i not in out.instances)
    if now >= night.shutdown_at:  # the sweep has begun: only what it still means to stop
        running = _still_to_stop(running, night, ledger, policy)
    plan = plan_mails(running, to_emails, options.notify_instance_owner)
    if record is not None and not _owed(plan, record):
        return None  # nothing new tonight: one read and one listing, no write
    claimed = policy.call(lambda: ledger.claim(night, MAIL, now, LEASE), "claiming the night's mail")
    if claimed is None:
        log.info("The mail for the night of %s is being sent by another run", night.day)
        return None
    owed = _owed(plan, claimed)
    if not owed and record is not None:
        save_progress(ledger, claimed.progressed((), ()), policy)  # told meanwhile by another run
        return None
    left_alone = plan_mails(announced(out.instances), to_emails, options.notify_instance_owner)
    stop = max(night.shutdown_at, now + rules.minimum_notice)  # told now: stopped then, not before
    late = {i.name.lower() for items in owed.values() for i in items if claimed.noticed_at(i.name) is None}
    return Announcement(
        night, rules.zone, claimed, owed,
        {to: len(items) for to, items in left_alone.by_recipient.items()},
        len(running), len(out.instances),
        {name: "not found in the workspace" for name in targets.missing},
        dict.fromkeys(late, stop) if stop > night.shutdown_at else {}, rules.minimum_notice,
    )  # fmt: skip


def _owed(plan, record: NightRecord) -> dict[str, tuple[Instance, ...]]:
    """Per recipient, what they have not been told yet: everything, if the mail to them has not gone
    out; else the instances nobody was told about (started after the mail)."""
    owed = {
        to: items if to not in record.done else tuple(i for i in items if record.noticed_at(i.name) is None)
        for to, items in plan.by_recipient.items()
    }
    return {to: items for to, items in owed.items() if items}


def _still_to_stop(running, night: Night, ledger: CancelLedger, policy: RetryPolicy) -> tuple[Instance, ...]:
    """After the shutdown: the running instances the sweep has not stopped and, once it has run, those
    it holds (for a notice) or that somebody keeps; a busy one is not stopped tonight at all."""
    sweep = policy.call(lambda: ledger.night_record(night, SWEEP), "reading the night's sweep record")
    done = {name.lower() for name in sweep.done} if sweep else set()
    held = {name.lower() for name in sweep.kept} if sweep and sweep.kept is not None else None
    return tuple(
        i for i in running
        if i.is_running and i.name.lower() not in done and (held is None or i.name.lower() in held)
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
    groups = [group for a in parts for group in _groups(now, to, a, options, signer)]
    names = tuple(item["name"] for group in groups for item in group["items"])
    twice = {name.lower() for name in names if sum(n.lower() == name.lower() for n in names) > 1}
    spaces = [g["workspace"].lower() for g in groups]
    for group in groups:  # two buttons must never read the same: name the workspace where names repeat
        where = group["workspace"]
        if spaces.count(where.lower()) > 1 and len({g["resource_group"] for g in groups}) > 1:
            where += f" ({group['resource_group']})"  # a workspace name in two resource groups
        for item in group["items"]:
            repeated = item["name"].lower() in twice
            item["label"] = f"{item['name']} in {where}" if repeated else item["name"]
    whens = {group["when"] for group in groups}
    subject = mail_subject(options.subject, names)
    context = dict(
        subject=subject,
        count=len(names),
        when=whens.pop() if len(whens) == 1 else "",
        groups=groups,
        workspaces=len({(g["workspace"], g["resource_group"]) for g in groups}),
    )
    return OutgoingMail(to, subject, render("mail.txt", **context), render("mail.html", **context), names)


def _groups(now: datetime, to: str, a: Announcement, options, signer: LinkSigner) -> list[dict]:
    """The workspace's instances for this recipient, by stop time: the shutdown's, and a later one for
    those told late (they keep their minimum notice)."""
    night, zone = a.night, a.zone
    by_time: dict[datetime, list[Instance]] = {}
    for instance in a.by_recipient[to]:
        by_time.setdefault(a.stops_at.get(instance.name.lower(), night.shutdown_at), []).append(instance)
    return [
        dict(
            workspace=night.target.name,
            resource_group=night.target.resource_group,
            shutdown_time=format_local(stop, zone),
            when=relative_day(stop, now, zone),
            late=stop > night.shutdown_at,
            notice_minutes=int(a.notice.total_seconds() // 60),
            items=[
                {
                    "name": i.name,
                    "note": _note(i),
                    "link": link_for(options.cancel_url, signer, night, i.name, to),
                }
                for i in instances
            ],
            opted_out=a.left_alone.get(to, 0) if n == 0 else 0,
            opt_out_tag=night.target.opt_out_tag,
        )
        for n, (stop, instances) in enumerate(sorted(by_time.items()))
    ]


def _note(instance: Instance) -> str:
    if instance.is_busy:
        return "running a job now; stopped only if the job has finished by then"
    return "running now"
