"""An Azure ML workspace over plain ARM REST: list its compute instances, stop one.

No Azure ML SDK: the calls go through an `ArmClient` (shared.arm_client), which holds the pooled
session, the token and the write buckets. Give every workspace of a run the same client (`client=`)
and the run signs in once, reuses its connections across workspaces, and paces the stops of each
subscription in one bucket, as ARM counts them; built with a credential instead, a workspace has a
client of its own.

- List: `GET .../workspaces/{ws}/computes`, every `nextLink` followed; only `ComputeInstance`s kept.
- Stop: `POST .../computes/{name}/stop`; 200/202 is STOPPED (the stop runs on in Azure; we do not
  wait for it), 409 (stopped or stopping already, another operation in progress) is NOT_RUNNING.
  There is no read before the stop: `shared.stopping` sends a stop only while the listing that said
  Running is fresh, and this adapter holds to the same rule while it waits for ARM's write bucket
  (`shared.arm_pacing`): a stop whose turn would come after its listing went stale is not sent
  (STALE, so the sweep lists again).
- Kind: before its first listing or stop, the adapter makes sure the workspace is not an Azure AI
  Foundry project (shared.workspace_kinds), whose compute is its hub's: ProjectWorkspaceError if it is.
  A workspace this run's listing found (a `*` entry) is known already; one an entry names costs one
  `GET` of the workspace per run (shared.arm_directory.describe).
- Errors (shared.errors, see shared.arm_client) name the workspace, which may come from aml_workspaces.

This module must never import azureml-core (nor shared.azureml_workspace, which does).
"""

from __future__ import annotations

import threading
import time
from urllib.parse import quote

from .arm_client import API_VERSION, MI_SETTINGS, SP_SETTINGS, ArmClient, ml_path
from .arm_directory import describe
from .arm_pacing import WriteBucket
from .domain import Instance, StopOutcome
from .stopping import FRESH_FOR
from .workspace_kinds import refuse_project

__all__ = ["API_VERSION", "MI_SETTINGS", "SP_SETTINGS", "ArmWorkspace"]

REMAINING_WRITES = "x-ms-ratelimit-remaining-subscription-writes"
WORKSPACE_HINT = " (check aml_workspaces, or subscription_id, resource_group and aml_workspace)"


class ArmWorkspace:
    """The `ComputeWorkspace` port over ARM. Safe to share between threads.

    Either `credential` (the workspace builds its own `ArmClient`; `client_options` such as
    `credential_settings`, `endpoint`, `timeout`, `pool_size` go to it) or `client=` (a run's shared
    client). `write_bucket` overrides the client's bucket for the subscription; `clock`
    (`time.monotonic`) only times how fresh a listing is.
    """

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        credential=None,
        *,
        client: ArmClient | None = None,
        api_version: str = API_VERSION,
        write_bucket: WriteBucket | None = None,
        clock=time.monotonic,
        **client_options,
    ):
        if (credential is None) == (client is None):
            raise TypeError("ArmWorkspace takes a credential or a client=, and not both")
        if client is not None and client_options:
            raise TypeError(f"with client=, {', '.join(client_options)} belong(s) to the client")
        self._client = client or ArmClient(credential, **client_options)
        self._owns_client = client is None
        self._where = (subscription_id, resource_group, workspace)
        self._vetted = False
        self._vet_lock = threading.Lock()
        self._computes_url = (
            f"{self._client.endpoint}{ml_path(subscription_id, resource_group)}"
            f"/workspaces/{quote(workspace, safe='')}/computes"
        )
        self._api_version = api_version
        self._bucket = write_bucket or self._client.bucket(subscription_id)
        self._clock = clock
        self.label = f"workspace {resource_group}/{workspace}"
        self._listed_at: dict[str, float] = {}  # instance name (lower case) -> when its listing began

    def list_instances(self) -> list[Instance]:
        self._vet(f"listing compute instances in {self.label}")
        started = self._clock()
        url = f"{self._computes_url}?api-version={quote(self._api_version)}"
        computes = self._client.pages(url, f"listing compute instances in {self.label}", WORKSPACE_HINT)
        instances = [
            _instance(compute)
            for compute in computes
            if (compute.get("properties") or {}).get("computeType") == "ComputeInstance"
        ]
        self._listed_at.update({instance.name.lower(): started for instance in instances})
        return instances

    def stop(self, name: str) -> StopOutcome:
        what = f"stopping {name} in {self.label}"
        self._vet(what)
        listed_at = self._listed_at.get(name.lower())
        fresh_for = None if listed_at is None else listed_at + FRESH_FOR - self._clock()
        if (fresh_for is not None and fresh_for < 0) or not self._bucket.take(fresh_for):
            return StopOutcome.STALE  # its turn in ARM's write bucket comes after its listing went stale
        url = f"{self._computes_url}/{quote(name, safe='')}/stop?api-version={quote(self._api_version)}"
        response = self._client.call("POST", url, what)
        remaining = response.headers.get(REMAINING_WRITES, "")
        if remaining.strip().isdigit():
            self._bucket.observe_remaining(int(remaining))
        if response.status_code in (200, 202):
            return StopOutcome.STOPPED
        if response.status_code == 409:  # stopped or stopping already, or another operation under way
            return StopOutcome.NOT_RUNNING
        raise self._client.http_error(response, what)

    def _vet(self, what: str) -> None:
        """ProjectWorkspaceError if the workspace is a Foundry project; asked once per adapter (run). A
        failed read fails `what` the adapter was about to do, as that call itself would have."""
        with self._vet_lock:
            if not self._vetted:
                refuse_project(describe(self._client, *self._where, what, WORKSPACE_HINT, self._api_version))
                self._vetted = True

    def close(self) -> None:
        """Close the client if it is this workspace's own; a shared one is its owner's to close."""
        if self._owns_client:
            self._client.close()


def _instance(compute: dict) -> Instance:
    properties = compute.get("properties") or {}
    inner = properties.get("properties") or {}
    created_by = inner.get("createdBy") or {}
    tags = compute.get("tags") or {}
    return Instance(
        name=str(compute.get("name", "")),
        state=str(inner.get("state") or properties.get("provisioningState") or "Unknown"),
        owner=created_by.get("userName") or None,
        tags=tuple((str(k), str(v)) for k, v in tags.items()) if isinstance(tags, dict) else (),
        size=str(inner.get("vmSize") or "") or None,
        region=str(compute.get("location") or properties.get("computeLocation") or "") or None,
    )
