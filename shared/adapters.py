"""The adapters the settings choose (see adapter_settings.py), built from plain values when first
needed, each importing its SDK only then: a deployment on the modern adapters never imports
azureml-core, azure-cosmosdb-table or sendgrid, and CancelShutDown builds only the ledger."""

from __future__ import annotations

from .credentials import ServicePrincipal, azure_credential
from .ports import CancelLedger, ComputeWorkspace, Mailer
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
        self._credential = None

    def principal(self) -> ServicePrincipal | None:
        s = self.settings
        if not s.uses_service_principal:
            return None
        return ServicePrincipal(s.tenant_id, s.service_principal_id, s.service_principal_password)

    def credential(self):
        """One azure-identity credential per run, shared by the adapters that sign in with it."""
        if self._credential is None:
            a = self.settings.adapters
            self._credential = azure_credential(self.principal(), a.managed_identity_client_id, a.in_azure)
        return self._credential

    def workspace(self) -> ComputeWorkspace:
        s = self.settings
        if s.adapters.compute_api == "arm":
            from .arm_workspace import ArmWorkspace

            hint = SP_SETTINGS if s.uses_service_principal else MI_SETTINGS
            return ArmWorkspace(
                s.subscription_id, s.resource_group, s.workspace, self.credential(), credential_settings=hint
            )
        from .azureml_workspace import AzureMLWorkspace

        return AzureMLWorkspace(s.subscription_id, s.resource_group, s.workspace, self.principal())

    def ledger(self) -> CancelLedger:
        s = self.settings
        if s.storage_connection_string:
            from .table_ledger import TableCancelLedger

            return TableCancelLedger(s.storage_connection_string, s.cancel_table)
        from .data_tables_ledger import DataTablesLedger

        return DataTablesLedger(s.adapters.table_service_uri, s.cancel_table, self.credential())

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
