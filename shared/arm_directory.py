"""ARM's listing of Azure ML workspaces: the `WorkspaceDirectory` port, for aml_workspaces entries ending
in `*` (`subscription_id/*`, `subscription_id/resource_group/*`), and the read of one workspace's kind.

`GET /subscriptions/{id}[/resourceGroups/{rg}]/providers/Microsoft.MachineLearningServices/workspaces`,
every `nextLink` followed on ARM's origin only, through the run's `ArmClient` (shared.arm_client): the
same sign-in and connections as the workspaces themselves, on either compute API. ARM lists only the
workspaces the identity may read, so one it has no role on is simply not there. Each item comes back
with its `kind` and, for an Azure AI Foundry project, `properties.hubResourceId` (shared.workspace_kinds
decides which are managed).

`describe` tells a compute adapter what kind of workspace it is about to read: from what its run's
client has listed already, so a workspace found through `*` costs no call, or else (an entry naming it)
with one `GET` of the workspace.

Errors (shared.errors) name the subscription or resource group: 403 CredentialsError, 404 NotFoundError
(no such subscription or resource group, or none the identity may see), 429/5xx TransientServiceError
with Retry-After.

This module must never import azureml-core.
"""

from __future__ import annotations

import threading
import weakref
from urllib.parse import quote

from .arm_client import API_VERSION, PROVIDER, ArmClient, ml_path
from .errors import ServiceError
from .workspace_kinds import ListedWorkspace

LISTING_HINT = " (check the subscription id and resource group of the aml_workspaces entry)"
# What each run's client has been told about its workspaces, by lower-case ARM id (a client is a run's).
_KNOWN: weakref.WeakKeyDictionary[ArmClient, dict[str, ListedWorkspace]] = weakref.WeakKeyDictionary()
_KNOWN_LOCK = threading.Lock()


class ArmWorkspaceDirectory:
    """The `WorkspaceDirectory` port over ARM REST. Safe to share between threads."""

    def __init__(self, client: ArmClient, *, api_version: str = API_VERSION):
        self._client = client
        self._api_version = api_version

    def list_workspaces(
        self, subscription_id: str, resource_group: str | None = None
    ) -> list[ListedWorkspace]:
        where = f"subscription {subscription_id}"
        if resource_group is not None:
            where = f"resource group {resource_group} of {where}"
        url = (
            f"{self._client.endpoint}{ml_path(subscription_id, resource_group)}/workspaces"
            f"?api-version={quote(self._api_version)}"
        )
        items = self._client.pages(url, f"listing the workspaces of {where}", LISTING_HINT)
        listed = [workspace for workspace in map(listed_workspace, items) if workspace is not None]
        _remember(self._client, listed)
        return listed


def describe(
    client: ArmClient, subscription_id: str, resource_group: str, name: str, what: str, hint: str,
    api_version: str = API_VERSION,
) -> ListedWorkspace:  # fmt: skip
    """The workspace's id, kind and hub: as the client's listing had it, else from one GET. Errors say
    `what` was being done (the listing or stop the read precedes) and end in the not-found `hint`."""
    arm_id = f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}{PROVIDER}/workspaces/{name}"
    with _KNOWN_LOCK:
        known = _KNOWN.get(client, {}).get(arm_id.lower())
    if known is not None:
        return known
    path = f"{ml_path(subscription_id, resource_group)}/workspaces/{quote(name, safe='')}"
    response = client.call("GET", f"{client.endpoint}{path}?api-version={quote(api_version)}", what)
    if response.status_code != 200:
        raise client.http_error(response, what, hint)
    try:
        workspace = listed_workspace(response.json())
    except ValueError as error:
        raise ServiceError("AzureML", f"{what}: unreadable answer from ARM") from error
    if workspace is None:
        raise ServiceError("AzureML", f"{what}: ARM's answer names no workspace")
    _remember(client, [workspace])
    return workspace


def listed_workspace(item: object) -> ListedWorkspace | None:
    """One item of ARM's answer; None if it names no workspace."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return None
    properties = item.get("properties") if isinstance(item.get("properties"), dict) else {}
    hub = properties.get("hubResourceId")
    kind = item.get("kind")
    return ListedWorkspace(
        item["id"], kind if isinstance(kind, str) else "", hub if isinstance(hub, str) else None
    )


def _remember(client: ArmClient, workspaces: list[ListedWorkspace]) -> None:
    with _KNOWN_LOCK:
        known = _KNOWN.setdefault(client, {})
        known.update({w.id.lower(): w for w in workspaces})
