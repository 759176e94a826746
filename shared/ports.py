"""The three external services, each as the smallest interface the use cases need.

Real adapters: AzureMLWorkspace (azureml_workspace.py) or ArmWorkspace (arm_workspace.py),
ArmWorkspaceDirectory (arm_directory.py), TableCancelLedger (table_ledger.py) or DataTablesLedger,
SendGridMailer (sendgrid_mailer.py) or AcsMailer. Fakes with the same methods live in tests/fakes.py.
Every method raises only errors from shared.errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from .domain import (
    Cancellation,
    Instance,
    Keep,
    Night,
    NightRecord,
    OutgoingMail,
    StopOutcome,
    WorkspaceTarget,
)

if TYPE_CHECKING:
    from .outcomes import InstanceNight
    from .workspace_kinds import ListedWorkspace


class ComputeWorkspace(Protocol):
    """The Azure ML workspace that owns the compute instances."""

    def list_instances(self) -> list[Instance]:
        """Every compute instance in the workspace (other compute types left out), in one listing."""
        ...

    def stop(self, name: str) -> StopOutcome:
        """Stop `name` if it is still Running; never stop an instance that is running a job."""
        ...


class WorkspaceDirectory(Protocol):
    """ARM's listing of Azure ML workspaces, for `aml_workspaces` entries that end in `*`."""

    def list_workspaces(
        self, subscription_id: str, resource_group: str | None = None
    ) -> list[ListedWorkspace]:
        """Every Azure ML workspace the app's identity can see in the subscription (or in one resource
        group of it), every page followed, as ARM lists it: its id, its kind and a project's hub. Which
        of them are managed is the caller's choice (shared.workspace_kinds)."""
        ...


class CancelLedger(Protocol):
    """Table Storage: the keeps people asked for, and what each night's runs have done."""

    def record(self, night: Night, cancellation: Cancellation) -> tuple[bool, Keep]:
        """Store a keep, or merge it into the one in force: the latest stop time wins. Returns whether
        it was new, and the keep now in force (unchanged if the sweep has begun to stop the instance)."""
        ...

    def keep(self, night: Night, instance: str) -> Keep | None:
        """The keep in force for one instance and night, read alone."""
        ...

    def kept_instances(self, night: Night) -> dict[str, Keep]:
        """The night's keeps by instance name, read with a single query."""
        ...

    def mark(
        self, night: Night, keep: Keep, *, stopping: bool = False, reminded: bool = False
    ) -> Keep | None:
        """Flag a keep (over the version read): the sweep is stopping it, or its reminder went out.
        None if it changed since it was read (a click moved its stop time)."""
        ...

    def night_record(self, night: Night, kind: str) -> NightRecord | None:
        """The night's mail or sweep record, if a tick has claimed it."""
        ...

    def claim(self, night: Night, kind: str, now: datetime, lease: timedelta) -> NightRecord | None:
        """Claim the night's mail run or sweep: an atomic insert, or taking over an unfinished record
        whose lease has run out. None if it is finished, or another tick holds it."""
        ...

    def save(self, record: NightRecord) -> NightRecord:
        """Store progress over the version claimed; LostClaimError if another tick took over since."""
        ...

    def record_outcomes(self, night: Night, rows: Sequence[InstanceNight]) -> None:
        """Store (or replace) what happened to each of these instances on the night."""
        ...

    def outcomes(self, target: WorkspaceTarget, first: date, last: date) -> dict[date, list[InstanceNight]]:
        """Every row stored for the workspace's nights from `first` to `last` (inclusive), by night."""
        ...


class PriceList(Protocol):
    """VM list prices (the Azure Retail Prices API), for the savings in the morning-after report."""

    def hourly_price(self, region: str, size: str, currency: str) -> float | None:
        """The Linux pay-as-you-go price per hour of `size` in `region`, or None if none is listed."""
        ...


class PriceCache(Protocol):
    """Prices kept in Table Storage, so that each (region, size, currency) is asked for once a week."""

    def cached_price(self, region: str, size: str, currency: str) -> tuple[float | None, datetime] | None:
        """The price stored for these, and when it was fetched; None if none is stored."""
        ...

    def cache_price(
        self, region: str, size: str, currency: str, price: float | None, fetched_at: datetime
    ) -> None:
        """Store (or replace) a price; None records that the API lists none for them."""
        ...


class Mailer(Protocol):
    def send(self, mail: OutgoingMail) -> None: ...
