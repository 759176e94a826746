"""The three external services, each as the smallest interface the use cases need.

Real adapters: AzureMLWorkspace (azureml_workspace.py), TableCancelLedger (table_ledger.py),
SendGridMailer (sendgrid_mailer.py). Fakes with the same methods live in tests/fakes.py.
Every method raises only errors from shared.errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Protocol

from .domain import Cancellation, Instance, OutgoingMail


class ComputeWorkspace(Protocol):
    """The Azure ML workspace that owns the compute instances."""

    def list_instances(self) -> list[Instance]:
        """Every compute instance in the workspace (other compute types left out), in one listing."""
        ...

    def stop(self, name: str) -> bool:
        """Ask Azure to stop `name`. False if it turned out to be not running any more."""
        ...


class CancelLedger(Protocol):
    """Where "keep it running tonight" requests are recorded."""

    def record(self, cancellation: Cancellation) -> bool:
        """Store it once. False if the same instance and day were already recorded."""
        ...

    def kept_instances(self, workspace: str, day: date) -> Iterable[str]:
        """Names of the instances somebody asked to keep on `day`, read with a single query."""
        ...


class Mailer(Protocol):
    def send(self, mail: OutgoingMail) -> None: ...
