"""The adapters the settings choose (see adapter_settings.py), built from plain values when first
needed, each importing its SDK only then: a deployment on the modern adapters never imports
azureml-core, azure-cosmosdb-table or sendgrid, and CancelShutDown builds only the ledger.

One factory serves one run, and everything it builds for the run shares one sign-in: every workspace
and the workspace listing go through one ARM client (compute_api=arm), or through one azureml-core
auth object (compute_api=azureml-core; the listing borrows its token through an ARM client of its
own), whatever the number of workspaces, subscriptions and resource groups. Workspaces may be built
from parallel threads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from .credentials import ServicePrincipal, azure_credential
from .ports import CancelLedger, ComputeWorkspace, Mailer, PriceCache, PriceList, WorkspaceDirectory
from .settings import Settings

SP_SETTINGS = ("tenant_id", "service_principal_id", "service_principal_password")
ACS_SETTINGS = (
    "acs_endpoint",
    "the Function App's managed identity and its role on the Communication Services resource",
)
MI_SETTINGS = (
    "managed_identity_client_id",
    "the Function App's managed identity and its role on the workspace",
)


class AdapterFactory:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.RLock()  # one of each shared object, however many threads ask at once
        self._credential = None
        self._arm_client = None
        self._azureml_auth = None

    def principal(self) -> ServicePrincipal | None:
        s = self.settings
        if not s.uses_service_principal:
            return None
        return ServicePrincipal(s.tenant_id, s.service_principal_id, s.service_principal_password)

    def credential(self):
        """One azure-identity credential per run, shared by the adapters that sign in with it."""
        with self._lock:
            if self._credential is None:
                a = self.settings.adapters
                self._credential = azure_credential(
                    self.principal(), a.managed_identity_client_id, a.in_azure
                )
            return self._credential

    def workspace(self, subscription_id: str, resource_group: str, name: str) -> ComputeWorkspace:
        """The compute adapter of one workspace, on the run's one sign-in."""
        if self._uses_arm:
            from .arm_workspace import ArmWorkspace

            return ArmWorkspace(subscription_id, resource_group, name, client=self._arm())
        from .azureml_workspace import AzureMLWorkspace

        principal = self.principal()
        return AzureMLWorkspace(
            subscription_id, resource_group, name, principal, auth=self._azureml(),
            write_bucket=self._arm().bucket(subscription_id),  # the subscription's, as the ARM client's
        )  # fmt: skip

    def directory(self) -> WorkspaceDirectory:
        """ARM's listing of workspaces, on the same sign-in as the workspaces, for either compute API."""
        from .arm_directory import ArmWorkspaceDirectory

        return ArmWorkspaceDirectory(self._arm())

    def _arm(self):
        """The run's one ARM client. With azureml-core it signs in through azureml-core's auth object, so
        the listing of workspaces asks Azure AD for no token of its own."""
        with self._lock:
            if self._arm_client is None:
                from .arm_client import ArmClient

                sp = self.settings.uses_service_principal
                if self._uses_arm:
                    hint = SP_SETTINGS if sp else MI_SETTINGS
                    credential = self.credential()
                else:
                    from . import azureml_workspace as aml

                    hint = aml.SP_SETTINGS if sp else aml.MI_SETTINGS
                    credential = aml.AzureMLAuthCredential(self._azureml(), hint)
                self._arm_client = ArmClient(credential, credential_settings=hint)
            return self._arm_client

    def _azureml(self):
        """The run's one azureml-core auth object (compute_api=azureml-core only)."""
        with self._lock:
            if self._azureml_auth is None:
                from .azureml_workspace import authentication

                self._azureml_auth = authentication(
                    self.principal(), self.settings.adapters.managed_identity_client_id
                )
            return self._azureml_auth

    @property
    def _uses_arm(self) -> bool:
        return self.settings.adapters.compute_api == "arm"

    def ledger(self) -> CancelLedger:
        s = self.settings
        if s.storage_connection_string:
            from .table_ledger import TableCancelLedger

            return TableCancelLedger(s.storage_connection_string, s.cancel_table)
        from .data_tables_ledger import DataTablesLedger

        return DataTablesLedger(s.adapters.table_service_uri, s.cancel_table, self.credential())

    def prices(self, cache: PriceCache) -> PriceList:
        """VM list prices from the Azure Retail Prices API (no key, no identity), each kept a week in
        `cache` (the ledger's table)."""
        from .retail_prices import CachedPrices, RetailPricesApi

        return CachedPrices(RetailPricesApi(), cache, clock=lambda: datetime.now(UTC))

    def mailer(self) -> Mailer:
        s, a = self.settings, self.settings.adapters
        if a.acs_endpoint:
            from .acs_mailer import AcsMailer

            hint = SP_SETTINGS if s.uses_service_principal else ACS_SETTINGS
            return AcsMailer(
                a.acs_endpoint, self.credential(), s.from_email, s.from_name, credential_settings=hint
            )
        if a.acs_connection_string:
            from .acs_mailer import AcsMailer

            return AcsMailer.from_connection_string(a.acs_connection_string, s.from_email, s.from_name)
        from .sendgrid_mailer import SendGridMailer

        return SendGridMailer(s.sendgrid_api_key, s.from_email, s.from_name)
