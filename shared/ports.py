"""The three external services, each as the smallest interface the use cases need.

Real adapters: AzureMLWorkspace (azureml_workspace.py), TableCancelLedger (table_ledger.py),
SendGridMailer (sendgrid_mailer.py). Fakes with the same methods live in tests/fakes.py.
Every method raises only errors from shared.errors.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from .domain import Cancellation, Instance, Night, NightRecord, OutgoingMail, StopOutcome


class ComputeWorkspace(Protocol):
    """The Azure ML workspace that owns the compute instances."""

    def list_instances(self) -> list[Instance]:
        """Every compute instance in the workspace (other compute types left out), in one listing."""
        ...

    def stop(self, name: str) -> StopOutcome:
        """Stop `name` if it is still Running; never stop an instance that is running a job."""
        ...


class CancelLedger(Protocol):
    """Table Storage: the keeps people asked for, and what each night's runs have done."""

    def record(self, night: Night, cancellation: Cancellation) -> bool:
        """Store a keep once. False if the same instance was already kept that night."""
        ...

    def kept_instances(self, night: Night) -> set[str]:
        """Names of the instances somebody asked to keep that night, read with a single query."""
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


class Mailer(Protocol):
    def send(self, mail: OutgoingMail) -> None: ...
