"""The workspaces one deployment manages: each entry of `aml_workspaces` with its own calendar and
recipients, and the workspaces behind its `*` entries.

A `*` entry is listed through ARM only on a tick when its calendar has something due (its calendar
does not depend on which workspaces it covers), so a tick with nothing due still makes no remote call.
A workspace covered by several entries belongs to the most specific one (see workspace_entries). Only
workspaces of the kinds shared.workspace_kinds manages are taken from the listings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from .domain import WORKSPACE_ID, InstanceSelection, WorkspaceTarget
from .errors import traceback_if_bug
from .ports import WorkspaceDirectory
from .retry import RetryPolicy
from .shutdown_calendar import CalendarRules, ShutdownCalendar
from .workspace_entries import EVERY, WorkspaceEntry
from .workspace_kinds import ListedWorkspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scope:
    """One entry, with the settings that apply to every workspace it covers."""

    entry: WorkspaceEntry
    rules: CalendarRules
    instances: InstanceSelection
    opt_out_tag: str
    to_emails: tuple[str, ...]

    def target(self, subscription_id: str, resource_group: str, name: str) -> WorkspaceTarget:
        return WorkspaceTarget(subscription_id, resource_group, name, self.instances, self.opt_out_tag)


@dataclass(frozen=True)
class Managed:
    """One workspace this run looks after: its calendar (which names it) and who is told about it."""

    calendar: ShutdownCalendar
    to_emails: tuple[str, ...]

    @property
    def target(self) -> WorkspaceTarget:
        return self.calendar.target


class Estate:
    def __init__(self, scopes: Sequence[Scope]):
        self.scopes = tuple(scopes)
        self._managed: dict[str, Managed] = {}
        self._passed_over: dict[str, ListedWorkspace] = {}  # by lower-case ARM id
        self._probes = {
            scope.entry: ShutdownCalendar(scope.target(scope.entry.subscription_id,
                                                       scope.entry.resource_group or EVERY, EVERY), scope.rules)
            for scope in self.scopes
            if scope.entry.is_pattern
        }  # fmt: skip

    def owner(self, subscription_id: str, resource_group: str, name: str) -> Scope | None:
        """The most specific entry that covers this workspace, or None."""
        covering = [s for s in self.scopes if s.entry.matches(subscription_id, resource_group, name)]
        return max(covering, key=lambda s: s.entry.specificity, default=None)

    def managed(self, scope: Scope, subscription_id: str, resource_group: str, name: str) -> Managed:
        target = scope.target(subscription_id, resource_group, name)
        if target.key not in self._managed:  # one calendar per workspace and run: its caches are shared
            self._managed[target.key] = Managed(ShutdownCalendar(target, scope.rules), scope.to_emails)
        return self._managed[target.key]

    def find(self, workspace: str) -> Managed | None:
        """The workspace a link names (its ARM id, or in old links its bare name), if this app manages it."""
        if WORKSPACE_ID.fullmatch(workspace):
            place = _place(workspace)
            scope = self.owner(*place)
            return scope and self.managed(scope, *place)
        named = [
            s
            for s in self.scopes
            if not s.entry.is_pattern and s.entry.workspace.lower() == workspace.lower()
        ]
        if len(named) != 1:
            return None
        return self._named(named[0])

    def single(self) -> Managed | None:
        """The workspace of a one-entry, one-workspace deployment."""
        if len(self.scopes) != 1 or self.scopes[0].entry.is_pattern:
            return None
        return self._named(self.scopes[0])

    def _named(self, scope: Scope) -> Managed:
        """The one workspace an entry without `*` names."""
        entry = scope.entry
        return self.managed(scope, entry.subscription_id, entry.resource_group or "", entry.workspace)

    def due(
        self,
        question: Callable[[ShutdownCalendar], object],
        directory: WorkspaceDirectory,
        policy: RetryPolicy,
    ) -> tuple[list[Managed], dict[str, str]]:
        """Every workspace whose calendar answers `question` with something, and the `*` entries that
        could not be listed (entry -> why). Entries are listed through ARM only when their calendar
        answers; the rest of the estate is never held back by one that fails. Each managed workspace
        comes once, however often (and in whatever case) the listings name it."""
        found: list[Managed] = []
        failures: dict[str, str] = {}
        for scope in self.scopes:
            entry = scope.entry
            if not entry.is_pattern:
                managed = self._named(scope)
                if question(managed.calendar):
                    found.append(managed)
                continue
            if not question(self._probes[entry]):
                continue
            try:
                listed = policy.call(
                    lambda entry=entry: directory.list_workspaces(
                        entry.subscription_id, entry.resource_group
                    ),
                    f"listing the workspaces of {entry.text}",
                )
            except Exception as error:
                failures[f"workspaces of {entry.text}"] = str(error)
                log.error("Could not list the workspaces of %s: %s", entry.text, error,
                          exc_info=traceback_if_bug(error))  # fmt: skip
                continue
            for managed in self._covered(scope, listed):
                if question(managed.calendar) and managed not in found:
                    found.append(managed)
        return found, failures

    def _covered(self, scope: Scope, listed: Sequence[ListedWorkspace]) -> Iterator[Managed]:
        """The listed workspaces that `scope` owns and manages. One it owns but may not manage (a
        Foundry project, a feature store: shared.workspace_kinds) is passed over, logged once a run."""
        for workspace in listed:
            if not WORKSPACE_ID.fullmatch(workspace.id) or self.owner(*_place(workspace.id)) is not scope:
                continue  # a more specific entry covers it, with its own calendar
            if workspace.managed:
                yield self.managed(scope, *_place(workspace.id))
            elif workspace.id.lower() not in self._passed_over:
                self._passed_over[workspace.id.lower()] = workspace
                log.info("Not managing workspace %s (found by %s): %s", workspace.label, scope.entry.text,
                         workspace.why_not_managed())  # fmt: skip

    @property
    def not_managed(self) -> dict[str, str]:
        """The workspaces this run's listings found and passed over (workspace -> why)."""
        return {w.label: w.why_not_managed() for w in self._passed_over.values()}

    def calendars(self) -> list[ShutdownCalendar]:
        """One calendar per entry (a `*` entry's stands for every workspace behind it): for questions
        of time alone, which need no listing."""
        return [self._probes.get(s.entry) or self._named(s).calendar for s in self.scopes]

    def skipped(self, now: datetime) -> list[tuple[str, tuple]]:
        """(entry, (day, why)) for each entry whose shutdown time passed in the last tick on a day
        without shutdown: one log line each, and no remote call."""
        days = []
        for scope, calendar in zip(self.scopes, self.calendars(), strict=True):
            skipped = calendar.skipped(now)
            if skipped:
                days.append((scope.entry.text, skipped))
        return days


def _place(workspace_id: str) -> tuple[str, str, str]:
    """(subscription, resource group, name) of a workspace's ARM id."""
    parts = workspace_id.strip("/").split("/")
    return parts[1], parts[3], parts[7]
