"""Plain values the use cases pass around. No I/O, no SDK types."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import Enum

# Azure ML naming rules: compute names 3-24 chars, letter first; workspaces 3-33 chars.
INSTANCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]")
WORKSPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,32}")
WORKSPACE_ID = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w.()]{1,90}"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/[A-Za-z0-9][A-Za-z0-9_-]{2,32}",
    re.IGNORECASE,
)

# Compute instance states (Azure ML REST `ComputeInstanceState`) we act on. Every other state
# (Stopped, Stopping, Starting, Creating, Restarting, SettingUp, Unusable, ...) is "not running".
RUNNING = "Running"
JOB_RUNNING = "JobRunning"
PARTLY_MISSED = "partly missed"  # a night record's state: see NightRecord
# Whose "keep" a hold is: the sweep keeps an instance running until `minimum_notice_minutes` after the
# first notice about it (a late one, when it started after the mail); a click on its link still counts.
NOTICE_HOLD = "(minimum notice)"


@dataclass(frozen=True)
class Instance:
    """A compute instance as listed by the workspace."""

    name: str
    state: str
    owner: str | None = None  # properties.createdBy.userName; an e-mail address for AAD users
    tags: tuple[tuple[str, str], ...] = ()  # Azure tags, as (name, value) pairs
    size: str | None = None  # the VM size (properties.properties.vmSize), which sets its price
    region: str | None = None  # the Azure region it runs in (location), which sets it too

    def tag(self, name: str) -> str | None:
        """The value of tag `name`; Azure tag names compare without case."""
        return next((value for key, value in self.tags if key.lower() == name.lower()), None)

    @property
    def is_running(self) -> bool:
        return self.state == RUNNING

    @property
    def is_busy(self) -> bool:
        """Running a job right now: never stopped, but it will be if the job ends before the sweep."""
        return self.state == JOB_RUNNING


class StopOutcome(Enum):
    STOPPED = "stopped"  # Azure accepted the stop
    NOT_RUNNING = "not running"  # a fresh read found it stopped or stopping already
    BUSY = "busy"  # a fresh read found it running a job: never stopped
    STALE = "stale"  # not tried: the read that said Running is too old to act on (list again)


@dataclass(frozen=True)
class InstanceSelection:
    """Which instances the app manages: every compute instance (`*`) or the listed names."""

    names: tuple[str, ...] = ()
    every_instance: bool = False

    def includes(self, name: str) -> bool:
        # Azure resource names are case-insensitive: `CI-Alice` in the settings is Azure's `ci-alice`.
        return self.every_instance or name.lower() in {n.lower() for n in self.names}


@dataclass(frozen=True)
class WorkspaceTarget:
    """One Azure ML workspace the app manages: where it is, which instances, and the opt-out tag."""

    subscription_id: str
    resource_group: str
    name: str
    instances: InstanceSelection = InstanceSelection(every_instance=True)
    opt_out_tag: str = "auto-shutdown"

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.name}"
        )

    @property
    def label(self) -> str:
        """How logs and failures name it, as an `aml_workspaces` entry: `subscription/group/workspace`."""
        return f"{self.subscription_id}/{self.resource_group}/{self.name}"

    @property
    def key(self) -> str:
        """The ARM id as a Table Storage key (no `/`), without case: Azure ids ignore case."""
        return f"{self.subscription_id}|{self.resource_group}|{self.name}".lower()

    def is_named_by(self, workspace_id: str) -> bool:
        return workspace_id.lower() == self.arm_id.lower()


@dataclass(frozen=True)
class Night:
    """One workspace's shutdown on one local date; `shutdown_at` is its UTC instant."""

    target: WorkspaceTarget
    day: date
    shutdown_at: datetime

    @property
    def key(self) -> str:
        return f"{self.target.key}|{self.day.isoformat()}"


@dataclass(frozen=True)
class NightRecord:
    """What one night's mail run or sweep has done so far, as kept in the ledger's table.

    A tick claims the night (an atomic insert, or taking over an unfinished record whose lease ran
    out), works, then saves its progress. `version` is the store's ETag: a save only succeeds over the
    version it claimed. `kept` (sweeps only) is the set of keeps the sweep honours: read once, right
    after the claim closed the night to new keeps, and reused by every later tick of that night.
    """

    night_key: str
    kind: str  # "mail" or "sweep"
    state: str  # "running"; "incomplete" (a later tick in the window retries); "waiting" (delayed stops
    # to come); "done"; "missed" (no sweep in its window); "partly missed" (swept, but some stops never happened)
    lease_until: datetime
    done: tuple[str, ...] = ()  # recipients mailed / instances stopped
    kept: tuple[str, ...] | None = None
    failures: tuple[str, ...] = ()
    version: str = ""
    noticed: tuple[tuple[str, datetime], ...] = ()  # mail runs: each instance and when it was first told

    @property
    def finished(self) -> bool:
        return self.state in ("done", "missed", PARTLY_MISSED)

    def progressed(
        self, done: tuple[str, ...], failures: tuple[str, ...], waiting: bool = False
    ) -> NightRecord:
        """After a tick: what it did added to what earlier ticks did. Incomplete if the night's sweep
        failed somewhere; waiting while delayed stops are still to come (or to be retried)."""
        merged = tuple(dict.fromkeys((*self.done, *done)))
        state = "waiting" if waiting else "incomplete" if failures else "done"
        return replace(self, state=state, done=merged, failures=failures)

    def takeover(self, now: datetime, lease: timedelta) -> NightRecord | None:
        """What a tick writes (over this version) to take the night over; None if it is finished, or
        another tick's lease still runs."""
        # A mail run that is done is taken up again for a late notice (an instance started after it).
        if (self.finished and self.kind != "mail") or (self.state == "running" and self.lease_until > now):
            return None
        return replace(self, state="running", lease_until=now + lease, version="")

    def noticed_at(self, instance: str) -> datetime | None:
        """When the people concerned were first told about `instance` this night, if they were."""
        return next((at for name, at in self.noticed if name.lower() == instance.lower()), None)

    def with_noticed(self, instances: tuple[str, ...], at: datetime) -> NightRecord:
        """These instances told about at `at`, unless they were told before (the first notice counts)."""
        new = tuple((name, at) for name in dict.fromkeys(instances) if self.noticed_at(name) is None)
        return replace(self, noticed=(*self.noticed, *new))

    def with_kept(self, kept: tuple[str, ...]) -> NightRecord:
        return replace(self, kept=kept)

    def missed(self) -> NightRecord:
        return replace(self, state="missed")

    def partly_missed(self, left_running: tuple[str, ...]) -> NightRecord:
        """The main sweep ran, but some of its stops never happened (no tick came, or every try failed)."""
        return replace(self, state=PARTLY_MISSED, failures=left_running)


@dataclass(frozen=True)
class Cancellation:
    """Somebody asked to keep `instance` running on the night of `day`: until `until`, or all night."""

    workspace: str  # the workspace's ARM id
    instance: str
    day: date
    requested_at: datetime
    client_ip: str = ""
    user_agent: str = ""
    until: datetime | None = None  # None: all night
    recipient: str = ""  # whose link it was: the address the mail went to


@dataclass(frozen=True)
class Keep:
    """The keep in force for an instance and night, as the ledger holds it (latest stop time wins)."""

    instance: str
    until: datetime | None  # None: all night
    recipient: str = ""
    reminded_for: datetime | None = None  # the `until` a reminder was sent for
    stopping: bool = False  # the sweep has begun to stop it: no click changes it any more
    version: str = ""
    requested_at: datetime | None = None  # when the click that set it came (for the status page)

    def later(self, until: datetime | None) -> datetime | None:
        """The later of this keep's stop time and `until` (all night is the latest of all)."""
        return None if self.until is None or until is None else max(self.until, until)

    def due(self, now: datetime) -> bool:
        return self.until is not None and self.until <= now

    @property
    def is_hold(self) -> bool:
        """Kept by the sweep until its minimum notice has run, not by anybody's click."""
        return self.recipient == NOTICE_HOLD


@dataclass(frozen=True)
class ClientInfo:
    """Who clicked, as far as the request says. Kept with the cancellation for auditing."""

    ip: str = ""
    user_agent: str = ""

    @classmethod
    def from_headers(cls, forwarded_for: str | None, user_agent: str | None) -> ClientInfo:
        # Azure's front ends put the original client first in X-Forwarded-For (often as ip:port).
        first = (forwarded_for or "").split(",")[0]
        return cls(_printable(first, 64), _printable(user_agent or "", 512))


def _printable(text: str, limit: int) -> str:
    return "".join(ch for ch in text if ch.isprintable()).strip()[:limit]


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # e.g. "text/csv"
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class OutgoingMail:
    to: str
    subject: str
    text: str
    html: str
    instances: tuple[str, ...] = field(default=())  # for logs and reports only
    attachments: tuple[Attachment, ...] = ()
