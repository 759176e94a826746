"""The workspaces the AzureML stand-in (:mod:`loopback.azureml`) serves, and their computes.

A :class:`StandInWorkspace` is what :meth:`AzureMLStandIn.add_workspace` hands a test (the default
workspace is one too): seed computes in it, read their states, see which stops reached it. It also
carries what a test did to it: :meth:`AzureMLStandIn.deny` (the app's identity lacks rights on it) and
:meth:`AzureMLStandIn.remove_workspace` (deleted). Workspaces are told apart by subscription, resource
group and name, compared without case as ARM compares them: two ``ws-ml`` in different resource groups
are two workspaces.

Each has an ARM ``kind`` (:data:`KINDS`; ``None``: ARM lists no kind, as for some older workspaces). An
Azure AI Foundry project (``"Project"``) names its hub (``properties.hubResourceId``) and shares the
hub's computes, as Foundry does: its compute list shows the hub's instances, and a stop through the
project stops the hub's instance.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field, replace

from . import azureml_payloads as p
from .traffic import Traffic

COMPUTE_TYPES = ("ComputeInstance", "AmlCompute")
#: What :meth:`AzureMLStandIn.deny` may take away: every right on the workspace, the right to read and
#: stop its computes, or only the writes (what an identity with Reader on it may not do).
DENIALS = ("all", "computes", "writes")
#: The ARM kinds of ``Microsoft.MachineLearningServices/workspaces`` the stand-in serves.
KINDS = ("Default", "Hub", "Project", "FeatureStore")


@dataclass
class Compute:
    """A seeded compute. ``stop_at``: monotonic time at which a Stopping instance becomes Stopped.

    ``tags``: the compute's ARM tags, served as its top-level ``"tags"`` (azureml-core's ``.tags``).
    """

    name: str
    compute_type: str
    state: str
    created_by: str
    created_on: str
    modified_on: str
    object_id: str
    stop_at: float | None = None
    operation_id: str | None = None
    last_operation: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    vm_size: str = "STANDARD_DS3_V2"


@dataclass(frozen=True)
class Denial:
    """What the app's identity may not do on a workspace: ``status`` answers the calls ``scope`` covers."""

    status: int
    scope: str


class StandInWorkspace:
    """One workspace of the stand-in. The test API mirrors the stand-in's own (which serves the default
    workspace): :meth:`seed`, :meth:`instance`, :meth:`instances`, :meth:`compute`, :meth:`stopped_names`."""

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        name: str,
        region: str,
        lock: threading.RLock,
        traffic: Traffic,
        kind: str | None = "Default",
        hub: StandInWorkspace | None = None,
    ):
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS} or None")
        if (kind == "Project") != (hub is not None) or (hub is not None and hub.kind != "Hub"):
            raise ValueError("a Project needs its hub (a workspace of kind Hub), and only a Project has one")
        self.subscription_id, self.resource_group, self.name = subscription_id, resource_group, name
        self.region = region.lower()
        self._lock, self._traffic = lock, traffic
        self.kind, self.hub = kind, hub
        # A project shows (and stops) its hub's compute instances: the very same records.
        self.computes: dict[str, Compute] = hub.computes if hub is not None else {}
        self.workspace_id = str(uuid.uuid4())
        self.denial: Denial | None = None
        self.removed = False

    # ------------------------------------------------------------------------ names
    @property
    def key(self) -> tuple[str, str, str]:
        return workspace_key(self.subscription_id, self.resource_group, self.name)

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"{p.PROVIDER}/workspaces/{self.name}"
        )

    @property
    def regional_host(self) -> str:
        return f"{self.region}.api.azureml.ms"

    def compute_arm_id(self, name: str) -> str:
        return f"{self.arm_id}/computes/{name}"

    def __repr__(self) -> str:
        return (
            f"<StandInWorkspace {self.resource_group}/{self.name} in {self.subscription_id} ({self.region})>"
        )

    # ------------------------------------------------------------------------ test API
    def seed(
        self,
        name: str,
        state: str = "Running",
        created_by: str = "alice@contoso.com",
        compute_type: str = "ComputeInstance",
        tags: dict[str, str] | None = None,
        vm_size: str = "STANDARD_DS3_V2",
    ) -> None:
        """Add (or replace) a compute; ``created_by`` is the creator's UPN (``createdBy.userName``);
        ``vm_size`` its ``properties.properties.vmSize``, as Azure ML spells sizes (capitals).

        ``tags`` are the compute's ARM tags (name -> value), served as the top-level ``"tags"`` of every
        representation of it: list pages and single GET, on the ARM and the regional host.
        """
        if compute_type not in COMPUTE_TYPES:
            raise ValueError(f"compute_type must be one of {COMPUTE_TYPES}")
        now = p.now_iso()
        object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, created_by))
        with self._lock:
            self.computes[name] = Compute(
                name,
                compute_type,
                state,
                created_by,
                now,
                now,
                object_id,
                tags=dict(tags or {}),
                vm_size=vm_size,
            )

    def instance(self, name: str) -> str:
        """Current state of a seeded compute ("Running", "Stopping", "Stopped", ...). KeyError if unknown."""
        with self._lock:
            return current(self.computes[name]).state

    def instances(self) -> dict[str, str]:
        """All seeded computes, name -> current state, in seeding order."""
        with self._lock:
            return {name: current(c).state for name, c in self.computes.items()}

    def compute(self, name: str) -> Compute:
        """A copy of the full record of a seeded compute."""
        with self._lock:
            c = current(self.computes[name])
            return replace(c, tags=dict(c.tags))

    def stopped_names(self) -> list[str]:
        """Names whose ``POST .../computes/{name}/stop`` on this workspace was answered 202, in completion
        order (ARM ids compare without case)."""
        stops = rf"(?i)^{re.escape(self.arm_id)}/computes/[^/]+/stop$"
        records = self._traffic.records(service="arm", method="POST", path_regex=stops, status=202)
        return [rec.path.rsplit("/", 2)[-2] for rec in records]

    # ------------------------------------------------------------------------ what the stand-in asks
    def denies(self, method: str, rest: str) -> bool:
        """Whether the identity may not make this call (``rest``: the path below the workspace's id)."""
        denial = self.denial
        if denial is None:
            return False
        if denial.scope == "all":
            return True
        if denial.scope == "computes":
            return rest != ""
        return method.upper() in {"PUT", "POST", "PATCH", "DELETE"}

    @property
    def listed(self) -> bool:
        """Whether ARM's listings show it: not once deleted, nor to an identity without any right on it
        (ARM filters a collection by what the caller may read)."""
        return not self.removed and not (self.denial is not None and self.denial.scope == "all")

    def clear(self) -> None:
        """Back to a fresh, empty, reachable workspace (a new workspace id, see AzureMLStandIn.reset)."""
        with self._lock:
            self.computes.clear()
            self.workspace_id = str(uuid.uuid4())
            self.denial = None
            self.removed = False


def workspace_key(subscription_id: str, resource_group: str, name: str) -> tuple[str, str, str]:
    return subscription_id.lower(), resource_group.lower(), name.lower()


def current(c: Compute) -> Compute:
    """Advance a Stopping instance to Stopped once ``stop_at`` has passed (caller holds the lock)."""
    if c.state == "Stopping" and c.stop_at is not None and time.monotonic() >= c.stop_at:
        c.state, c.stop_at, c.modified_on = "Stopped", None, p.now_iso()
    return c
