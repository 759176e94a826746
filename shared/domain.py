"""Plain values the use cases pass around. No I/O, no SDK types."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

# Azure ML naming rules: compute names 3-24 chars, letter first; workspaces 3-33 chars.
INSTANCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]")
WORKSPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,32}")

# Compute instance states (Azure ML REST `ComputeInstanceState`) we act on. Every other state
# (Stopped, Stopping, Starting, Creating, Restarting, SettingUp, Unusable, ...) is "not running".
RUNNING = "Running"
JOB_RUNNING = "JobRunning"


@dataclass(frozen=True)
class Instance:
    """A compute instance as listed by the workspace."""

    name: str
    state: str
    owner: str | None = None  # properties.createdBy.userName; an e-mail address for AAD users

    @property
    def is_running(self) -> bool:
        return self.state == RUNNING

    @property
    def is_busy(self) -> bool:
        """Running a job right now: never stopped, but it will be if the job ends before the sweep."""
        return self.state == JOB_RUNNING


@dataclass(frozen=True)
class InstanceSelection:
    """Which instances the app manages: every compute instance (`*`) or the listed names."""

    names: tuple[str, ...] = ()
    every_instance: bool = False

    def includes(self, name: str) -> bool:
        # Azure resource names are case-insensitive: `CI-Alice` in the settings is Azure's `ci-alice`.
        return self.every_instance or name.lower() in {n.lower() for n in self.names}


@dataclass(frozen=True)
class Cancellation:
    """Somebody asked to keep `instance` running on the night of `day`."""

    workspace: str
    instance: str
    day: date
    requested_at: datetime
    client_ip: str = ""
    user_agent: str = ""


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
class OutgoingMail:
    to: str
    subject: str
    text: str
    html: str
    instances: tuple[str, ...] = field(default=())  # for logs and reports only
