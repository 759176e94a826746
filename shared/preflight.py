"""The preflight check (`make check`): what tonight would do, done with reads only.

After a deployment (or a change of settings), an operator wants to know, before the evening, that the
settings parse, the identity signs in, every workspace is reachable and which instances would be
mailed about and stopped. This use case does what a tick does up to the first write: it lists the
workspaces (`*` entries through ARM) and their instances and reads tonight's keeps, and it never
mails, stops, claims a night or writes anything. Workspaces a `*` entry found but does not manage
(Azure AI Foundry projects, feature stores) are named with the reason; an entry naming a project is a
problem of that entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from .decisions import ShutdownPlan, announced, opt_outs, plan_mails, plan_shutdown
from .domain import Night, WorkspaceTarget
from .estate import Estate, Managed
from .inventory import list_targets
from .ports import CancelLedger, ComputeWorkspace, WorkspaceDirectory
from .retry import RetryPolicy
from .shutdown_calendar import CalendarRules


@dataclass(frozen=True)
class WorkspaceCheck:
    target: WorkspaceTarget
    zone: tzinfo
    night: Night | None = None  # the next shutdown (or the one whose sweep is due now); None: none ahead
    plan: ShutdownPlan = field(default_factory=ShutdownPlan)
    kept_until: dict[str, datetime | None] = field(
        default_factory=dict
    )  # instance -> stop time (None: night)
    recipients: dict[str, tuple[str, ...]] = field(default_factory=dict)  # recipient -> instance names
    missing: tuple[str, ...] = ()  # named in the settings, not in the workspace
    problem: str | None = None  # what failed: the workspace was not (fully) checked
    rules: CalendarRules | None = None  # the calendar it will use: days, time, zone, warning, notice


@dataclass(frozen=True)
class Preflight:
    now: datetime
    workspaces: tuple[WorkspaceCheck, ...]
    problems: dict[str, str]  # entries whose workspaces could not be listed, and failed workspaces
    not_managed: dict[str, str] = field(default_factory=dict)  # found by `*` entries, passed over: why

    @property
    def ok(self) -> bool:
        return not self.problems


def preflight(
    now: datetime,
    estate: Estate,
    directory: WorkspaceDirectory,
    workspace_for,
    ledger: CancelLedger,
    notify_instance_owner: bool,
    policy: RetryPolicy,
) -> Preflight:
    """Check every workspace the settings name (`workspace_for(target)` gives its adapter)."""
    managed, problems = estate.due(lambda calendar: True, directory, policy)
    checks = []
    for workspace in managed:
        check = _check(now, workspace, workspace_for(workspace.target), ledger, notify_instance_owner, policy)
        if check.problem:
            problems[workspace.target.label] = check.problem
        checks.append(check)
    return Preflight(now, tuple(checks), problems, estate.not_managed)


def _check(
    now: datetime, managed: Managed, workspace: ComputeWorkspace, ledger: CancelLedger, owners: bool, policy
) -> WorkspaceCheck:
    calendar = managed.calendar
    zone, target = calendar.rules.zone, managed.target
    night = calendar.sweep_due(now) or calendar.next_night(now)
    try:
        targets = list_targets(workspace, target.instances, policy)
    except Exception as error:
        return WorkspaceCheck(target, zone, night, problem=str(error), rules=calendar.rules)
    keeps = {}
    problem = None
    if night is not None:
        try:
            keeps = policy.call(lambda: ledger.kept_instances(night), "reading tonight's keeps")
        except Exception as error:  # the workspace was checked; the ledger was not
            problem = str(error)
    day = night.day if night else calendar.local_date(now)
    out = opt_outs(targets.instances, target.opt_out_tag, day)
    plan = plan_shutdown(targets.instances, keeps, out.instances)
    mails = plan_mails(
        announced(i for i in targets.instances if i not in out.instances), managed.to_emails, owners
    )
    return WorkspaceCheck(
        target, zone, night, plan,
        {name: keep.until for name, keep in keeps.items()},
        {to: tuple(i.name for i in items) for to, items in mails.by_recipient.items()},
        targets.missing, problem, calendar.rules,
    )  # fmt: skip
