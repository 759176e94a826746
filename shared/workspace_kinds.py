"""Which Azure ML workspaces the app manages, by their ARM `kind`.

`Microsoft.MachineLearningServices/workspaces` come in several kinds: `Default` (an Azure ML workspace;
some list no kind at all), `Hub` (an Azure AI Foundry hub), `Project` (a Foundry project, whose
`properties.hubResourceId` names its hub) and `FeatureStore`. A hub's compute instances live on the hub,
and each of its projects shows them too: managing a project as well would mail about one instance twice
and could stop it through the project while its keep was recorded against the hub. So only `Default`
(or no kind) and `Hub` are managed. A `*` entry passes the others over, one INFO line each
(shared.estate); an entry naming a project fails that workspace with ProjectWorkspaceError, raised by the
compute adapters on their first read of it: the settings alone cannot tell a project from a workspace.
"""

from __future__ import annotations

from dataclasses import dataclass

from .domain import WORKSPACE_ID
from .errors import ProjectWorkspaceError

MANAGED_KINDS = frozenset({"", "default", "hub"})  # lower case: ARM's kinds compare without case
PROJECT = "project"


@dataclass(frozen=True)
class ListedWorkspace:
    """A workspace as ARM describes it: its ARM id, its `kind` ("" if none) and, for a project, its hub."""

    id: str
    kind: str = ""
    hub_id: str | None = None

    @property
    def managed(self) -> bool:
        return self.kind.lower() in MANAGED_KINDS

    @property
    def is_project(self) -> bool:
        return self.kind.lower() == PROJECT

    @property
    def label(self) -> str:
        return label_of(self.id)

    def why_not_managed(self) -> str:
        if self.is_project:
            return f"an Azure AI Foundry project of hub {self.hub}: its compute instances are the hub's"
        return f"of kind {self.kind}: only workspaces of kind Default and Hub are managed"

    @property
    def hub(self) -> str:
        return label_of(self.hub_id) if self.hub_id else "(not named by ARM)"


def refuse_project(workspace: ListedWorkspace) -> None:
    """ProjectWorkspaceError if an entry that names this workspace names a Foundry project."""
    if workspace.is_project:
        raise ProjectWorkspaceError(
            f"aml_workspaces names {workspace.label}, {workspace.why_not_managed()}; name the hub instead"
        )


def label_of(arm_id: str) -> str:
    """`subscription/resource group/name` of a workspace's ARM id, as the app names workspaces."""
    if not WORKSPACE_ID.fullmatch(arm_id.rstrip("/")):
        return arm_id
    parts = arm_id.strip("/").split("/")
    return f"{parts[1]}/{parts[3]}/{parts[7]}"
