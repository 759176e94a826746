"""ARM's listing of Azure ML workspaces: the `WorkspaceDirectory` port, for aml_workspaces entries ending
in `*` (`subscription_id/*`, `subscription_id/resource_group/*`).

`GET /subscriptions/{id}[/resourceGroups/{rg}]/providers/Microsoft.MachineLearningServices/workspaces`,
every `nextLink` followed on ARM's origin only, through the run's `ArmClient` (shared.arm_client): the
same sign-in and connections as the workspaces themselves, on either compute API. ARM lists only the
workspaces the identity may read, so one it has no role on is simply not there.

Errors (shared.errors) name the subscription or resource group: 403 CredentialsError, 404 NotFoundError
(no such subscription or resource group, or none the identity may see), 429/5xx TransientServiceError
with Retry-After.

This module must never import azureml-core.
"""

from __future__ import annotations

from urllib.parse import quote

from .arm_client import API_VERSION, ArmClient, ml_path

LISTING_HINT = " (check the subscription id and resource group of the aml_workspaces entry)"


class ArmWorkspaceDirectory:
    """The `WorkspaceDirectory` port over ARM REST. Safe to share between threads."""

    def __init__(self, client: ArmClient, *, api_version: str = API_VERSION):
        self._client = client
        self._api_version = api_version

    def list_workspaces(self, subscription_id: str, resource_group: str | None = None) -> list[str]:
        where = f"subscription {subscription_id}"
        if resource_group is not None:
            where = f"resource group {resource_group} of {where}"
        url = (
            f"{self._client.endpoint}{ml_path(subscription_id, resource_group)}/workspaces"
            f"?api-version={quote(self._api_version)}"
        )
        items = self._client.pages(url, f"listing the workspaces of {where}", LISTING_HINT)
        return [item["id"] for item in items if isinstance(item.get("id"), str)]
