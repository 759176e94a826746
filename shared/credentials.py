"""The app's Azure identity for the modern adapters (ARM, azure-data-tables, ACS Email): one credential
per run, so one token per resource per run. azure-identity is imported only when one is built."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServicePrincipal:
    tenant_id: str
    client_id: str
    secret: str = field(repr=False)


def azure_credential(
    principal: ServicePrincipal | None, managed_identity_client_id: str | None, in_azure: bool
):
    """A service principal when one is configured; in Azure the managed identity (user-assigned with
    `managed_identity_client_id`); elsewhere DefaultAzureCredential, so that `az login` works locally."""
    from azure.identity import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential

    # retry_total=0: shared.retry.RetryPolicy is the only retry layer (azure-core would retry a token
    # service 5xx 3-4 times, about 5 s, underneath it).
    if principal is not None:
        return ClientSecretCredential(
            principal.tenant_id, principal.client_id, principal.secret, retry_total=0
        )
    if in_azure:
        if managed_identity_client_id:
            return ManagedIdentityCredential(client_id=managed_identity_client_id, retry_total=0)
        return ManagedIdentityCredential(retry_total=0)
    return DefaultAzureCredential(managed_identity_client_id=managed_identity_client_id, retry_total=0)
