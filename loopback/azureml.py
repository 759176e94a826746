"""Stand-in for Entra ID (AAD), Azure Resource Manager and the regional Azure ML API.

It answers exactly the calls that unmodified ``azureml-core`` makes for::

    ws = Workspace(sub, rg, name, auth=ServicePrincipalAuthentication(tenant, client_id, secret))
    ComputeTarget.list(ws)            # regional host, follows nextLink
    ComputeInstance(ws, name).stop()  # GET on the regional host, then POST .../stop on ARM

and the plain ARM REST calls of the app's ARM client, for any number of workspaces: the default one
(the constructor's subscription, resource group and name; what :meth:`AzureMLStandIn.seed` and the other
shortcuts act on) and those added with :meth:`AzureMLStandIn.add_workspace`, in as many subscriptions,
resource groups and regions as a test likes (:mod:`loopback.azureml_workspaces`).

Hosts and the service names used in the request log and in faults:

* ``login.microsoftonline.com`` -> ``"aad"``: OpenID configuration, instance discovery and the
  client-credentials token endpoint. Tokens are HS256 JWTs (the SDK decodes them without checking the
  signature, e.g. for ``exp``) and are remembered, so ARM/regional calls can demand one of them.
  Tokens of other issuers are accepted too once trusted with :meth:`AzureMLStandIn.accept_tokens_from`
  (the managed-identity endpoint, :mod:`loopback.identity`). A token for another resource than ARM
  gets ARM's 401 ``InvalidAuthenticationTokenAudience``.
* ``management.azure.com`` -> ``"arm"``: the subscriptions; the listings of workspaces by subscription
  and by resource group (paged with ``nextLink``, :attr:`AzureMLStandIn.workspace_page_size` a page);
  each workspace (its ``discoveryUrl`` points at its regional host), its paged compute list
  (``nextLink``, as the ARM REST API serves it), ``POST .../stop`` (202 + ``Azure-AsyncOperation`` +
  ``Location``; 409 ``Conflict`` when stopped, stopping or in another operation) and the
  async-operation URLs. An unknown subscription is 404 ``SubscriptionNotFound``, an unknown resource
  group 404 ``ResourceGroupNotFound``, an unknown workspace 404 ``ResourceNotFound``. Optionally ARM's
  write throttling: :meth:`AzureMLStandIn.enforce_write_bucket` (off by default) gives every
  subscription and principal a token bucket of writes, as ARM does; a write past it gets 429
  ``SubscriptionRequestsThrottled`` naming the subscription, with ``Retry-After``, and every write
  answer says ``x-ms-ratelimit-remaining-subscription-writes``.
* ``<region>.api.azureml.ms`` -> ``"azureml"``, for every region a workspace is in: ``/discovery``
  (anonymous, as azureml-core fetches it without a token) and ``/rp/workspaces/...computes[/{name}]``
  of the workspaces in that region.

Workspaces have ARM kinds (:data:`~loopback.azureml_workspaces.KINDS`): ``add_workspace(..., kind="Hub")``,
``kind="FeatureStore"``, or ``kind="Project", hub=<the hub>`` for an Azure AI Foundry project, which
names its hub (``properties.hubResourceId``) and shares the hub's computes.

Per-workspace trouble, as Azure has it: :meth:`AzureMLStandIn.deny` (the identity lacks rights on a
workspace: 403 ``AuthorizationFailed`` in ARM's words) and :meth:`AzureMLStandIn.remove_workspace`
(404 ``ResourceNotFound``, gone from the listings).

Bodies are built in :mod:`loopback.azureml_payloads`, Azure AD lives in :mod:`loopback.aad`;
this module holds the ARM and regional behaviour.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from . import azureml_payloads as p
from .aad import AzureADStandIn
from .azureml_workspaces import (
    COMPUTE_TYPES,
    DENIALS,
    KINDS,
    Compute,
    Denial,
    StandInWorkspace,
    current,
    workspace_key,
)
from .server import Request, Response
from .traffic import Traffic

__all__ = ["COMPUTE_TYPES", "KINDS", "AzureMLStandIn", "Compute", "StandInWorkspace", "WriteBuckets"]

#: States in which Azure accepts a stop request (202). Others get 409 from the stand-in.
STOPPABLE_STATES = frozenset(
    {
        "Running",
        "JobRunning",
        "Starting",
        "Restarting",
        "SettingUp",
        "UserSettingUp",
        "SetupFailed",
        "UserSetupFailed",
    }
)
#: The audiences ARM accepts in a bearer token (the same token serves the regional Azure ML host).
ARM_AUDIENCES = frozenset(
    {
        "https://management.core.windows.net/",
        "https://management.core.windows.net",
        "https://management.azure.com/",
        "https://management.azure.com",
    }
)
WRITE_METHODS = frozenset({"PUT", "POST", "PATCH", "DELETE"})
REMAINING_WRITES = "x-ms-ratelimit-remaining-subscription-writes"
API_VERSION_RP = "2020-02-02"  # what azureml-core sends for computes
STATUS_API_VERSION = "2023-04-01"
ARM = "https://management.azure.com"

_SUB_RE = re.compile(r"^/subscriptions/(?P<sub>[^/]+)", re.IGNORECASE)
_WS_RE = re.compile(
    rf"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+){p.PROVIDER}"
    r"/workspaces/(?P<ws>[^/]+)(?P<rest>/.*)?$",
    re.IGNORECASE,
)
_LIST_RE = re.compile(
    rf"^/subscriptions/(?P<sub>[^/]+)(?:/resourceGroups/(?P<rg>[^/]+))?{p.PROVIDER}/workspaces$",
    re.IGNORECASE,
)
_OP_RE = re.compile(
    rf"^/subscriptions/(?P<sub>[^/]+){p.PROVIDER}/locations/(?P<loc>[^/]+)/"
    r"(?P<kind>computeOperationsStatus|computeOperationsResults)/(?P<op>[^/]+)$",
    re.IGNORECASE,
)
_REGIONAL_RE = re.compile(r"^(?P<region>[a-z0-9-]+)\.api\.azureml\.ms$")
_COMPUTE_RE = re.compile(r"^/computes/([^/]+)(?:/(stop|start|restart))?$", re.IGNORECASE)
_ARM_ERROR_CODES = {
    400: "BadRequest",
    401: "AuthenticationFailed",
    403: "AuthorizationFailed",
    404: "NotFound",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass
class _Operation:
    id: str
    workspace: StandInWorkspace
    compute: str
    started: str


class TokenIssuer(Protocol):
    """Another token service whose tokens ARM accepts (e.g. :class:`~loopback.identity.ManagedIdentityStandIn`)."""

    def issued(self, token: str) -> bool: ...

    def revoke_tokens(self) -> None: ...


class WriteBuckets:
    """ARM's write throttling: per subscription and principal, a bucket of ``capacity`` writes refilled at
    ``refill_per_second``. The stand-in's own implementation, independent of the app's pacing."""

    def __init__(self, capacity: int, refill_per_second: float, clock: Callable[[], float] = time.monotonic):
        self.capacity, self.refill_per_second, self._clock = capacity, refill_per_second, clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # -> (tokens, when counted)
        self._lock = threading.Lock()

    def take(self, subscription_id: str, principal: str) -> tuple[bool, int, float]:
        """(allowed, writes remaining, seconds until the next token) for one write by ``principal`` in
        ``subscription_id``."""
        key = (subscription_id.lower(), principal)
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(key, (float(self.capacity), now))
            tokens = min(float(self.capacity), tokens + (now - then) * self.refill_per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            return allowed, int(tokens), 0.0 if allowed else (1.0 - tokens) / self.refill_per_second


class AzureMLStandIn:
    """Fake AAD + ARM + regional Azure ML for one tenant and any number of workspaces.

    The constructor's subscription, resource group and workspace make the default workspace, which
    :meth:`seed`, :meth:`instance`, :meth:`instances`, :meth:`compute`, :meth:`stopped_names` and
    :attr:`workspace_arm_id` act on; :meth:`add_workspace` adds more (each with the same methods).
    Faults and the request log live in :attr:`traffic` (shared with the SendGrid stand-in under
    :class:`~loopback.stack.StandIns`). ``page_size`` (computes), ``workspace_page_size`` (workspace
    listings) and ``stop_delay`` may be changed at any time.
    """

    def __init__(
        self,
        tenant_id: str = "5f1c1e4d-0000-4000-8000-00000000a11d",
        client_id: str = "0c5b7a4e-0000-4000-8000-0000000c11e7",
        client_secret: str = "standin-sp-secret",
        subscription_id: str = "3b1c0d7e-0000-4000-8000-000000005ab5",
        resource_group: str = "rg-ml-standin",
        workspace: str = "ws-standin",
        region: str = "westeurope",
        page_size: int = 100,
        stop_delay: float = 0.2,
        token_lifetime: int = 3599,
        traffic: Traffic | None = None,
        workspace_page_size: int = 100,
    ):
        self.aad = AzureADStandIn(tenant_id, client_id, client_secret, token_lifetime)
        self.tenant_id, self.client_id, self.client_secret = tenant_id, client_id, client_secret
        self.page_size = page_size
        self.workspace_page_size = workspace_page_size
        self.stop_delay = stop_delay
        self._defaults = {
            "page_size": page_size,
            "workspace_page_size": workspace_page_size,
            "stop_delay": stop_delay,
        }
        self.traffic = traffic if traffic is not None else Traffic()
        self._lock = threading.RLock()
        self._default = StandInWorkspace(
            subscription_id, resource_group, workspace, region, self._lock, self.traffic
        )
        self._workspaces: dict[tuple[str, str, str], StandInWorkspace] = {self._default.key: self._default}
        self._operations: dict[str, _Operation] = {}
        self._issuers: list[TokenIssuer] = []
        self.write_buckets: WriteBuckets | None = None

    # ------------------------------------------------------------------------ the default workspace
    @property
    def default_workspace(self) -> StandInWorkspace:
        return self._default

    @property
    def subscription_id(self) -> str:
        return self._default.subscription_id

    @property
    def resource_group(self) -> str:
        return self._default.resource_group

    @property
    def workspace(self) -> str:
        """The default workspace's name (an App Setting value, as ``aml_workspace``)."""
        return self._default.name

    @property
    def region(self) -> str:
        return self._default.region

    @property
    def workspace_id(self) -> str:
        return self._default.workspace_id

    @property
    def regional_host(self) -> str:
        return self._default.regional_host

    @property
    def workspace_arm_id(self) -> str:
        return self._default.arm_id

    def compute_arm_id(self, name: str) -> str:
        return self._default.compute_arm_id(name)

    def seed(
        self,
        name: str,
        state: str = "Running",
        created_by: str = "alice@contoso.com",
        compute_type: str = "ComputeInstance",
        tags: dict[str, str] | None = None,
        vm_size: str = "STANDARD_DS3_V2",
    ) -> None:
        """:meth:`StandInWorkspace.seed` on the default workspace."""
        self._default.seed(name, state, created_by, compute_type, tags, vm_size)

    def instance(self, name: str) -> str:
        """Current state of a compute of the default workspace. KeyError if unknown."""
        return self._default.instance(name)

    def instances(self) -> dict[str, str]:
        """The default workspace's computes, name -> current state, in seeding order."""
        return self._default.instances()

    def compute(self, name: str) -> Compute:
        """A copy of the full record of a compute of the default workspace."""
        return self._default.compute(name)

    def stopped_names(self) -> list[str]:
        """Names whose ``POST .../computes/{name}/stop`` on the default workspace was answered 202, in
        completion order."""
        return self._default.stopped_names()

    # ------------------------------------------------------------------------ more workspaces
    def add_workspace(
        self,
        subscription_id: str,
        resource_group: str,
        name: str,
        region: str = "westeurope",
        kind: str | None = "Default",
        hub: StandInWorkspace | None = None,
    ) -> StandInWorkspace:
        """Another workspace; its subscription, resource group and region host come into being with it.
        The same name in another resource group or subscription is another workspace. A removed
        workspace may be added again (empty); adding one that exists is a ValueError. ``kind`` is its
        ARM kind (None: none listed); a ``"Project"`` needs its ``hub`` and shares the hub's computes."""
        with self._lock:
            key = workspace_key(subscription_id, resource_group, name)
            known = self._workspaces.get(key)
            if known is not None and not known.removed:
                raise ValueError(f"the stand-in already serves {known!r}")
            added = StandInWorkspace(
                subscription_id, resource_group, name, region, self._lock, self.traffic, kind, hub
            )
            self._workspaces[key] = added
            return added

    def workspaces(self) -> list[StandInWorkspace]:
        """Every workspace, the default first, then in the order they were added (removed ones too)."""
        with self._lock:
            return list(self._workspaces.values())

    def deny(self, workspace: StandInWorkspace | str, status: int = 403, *, scope: str = "all") -> None:
        """The app's identity lacks rights on ``workspace`` (a handle or its ARM id), as in Azure:

        * ``scope="all"``: no role on it at all. Every call on it, on ARM (the workspace GET included) and
          its regional host, is answered ``status``: 403 ``AuthorizationFailed`` in ARM's words, naming
          the client, the action and the scope. ARM's listings leave it out, as ARM filters a collection
          by what the caller may read (so an ``aml_workspaces`` entry naming it gets the 403, a ``*``
          entry never sees it);
        * ``scope="computes"``: it may read the workspace (it is listed, its GET answers 200) but not its
          computes: listing, reading or stopping them is ``status`` (a custom role with
          ``workspaces/read`` alone);
        * ``scope="writes"``: Reader on it: everything reads, every stop is ``status``.

        :meth:`reset` lifts it.
        """
        if scope not in DENIALS:
            raise ValueError(f"scope must be one of {DENIALS}")
        with self._lock:
            self._resolve(workspace).denial = Denial(status, scope)

    def remove_workspace(self, workspace: StandInWorkspace | str) -> None:
        """Delete ``workspace`` (a handle or its ARM id): every call on it is 404 ``ResourceNotFound`` and
        the listings leave it out. Its subscription, resource group and region stay."""
        with self._lock:
            self._resolve(workspace).removed = True

    def _resolve(self, workspace: StandInWorkspace | str) -> StandInWorkspace:
        if isinstance(workspace, StandInWorkspace):
            key = workspace.key
        else:
            m = _WS_RE.match(workspace.rstrip("/"))
            if m is None or m.group("rest"):
                raise ValueError(f"not a workspace ARM id: {workspace!r}")
            key = workspace_key(m.group("sub"), m.group("rg"), m.group("ws"))
        if key not in self._workspaces:
            raise KeyError(f"the stand-in serves no workspace {workspace!r}")
        return self._workspaces[key]

    # ------------------------------------------------------------------------ tokens, throttling, reset
    def revoke_tokens(self) -> None:
        """Forget every issued token: the next ARM/regional call gets 401 (expired-token scenario)."""
        self.aad.revoke_tokens()
        for issuer in self._issuers:
            issuer.revoke_tokens()

    def accept_tokens_from(self, issuer: TokenIssuer) -> None:
        """Trust the bearer tokens ``issuer`` issued (besides Azure AD's), e.g. a managed identity's."""
        self._issuers.append(issuer)

    def enforce_write_bucket(self, capacity: int = 200, refill_per_second: float = 10.0) -> WriteBuckets:
        """Throttle ARM writes as ARM does: per subscription and principal, ``capacity`` writes, refilled
        at ``refill_per_second``; a write past the bucket gets 429 with ``Retry-After`` (whole seconds).
        Off until called; :meth:`reset` turns it off again."""
        self.write_buckets = WriteBuckets(capacity, refill_per_second)
        return self.write_buckets

    def reset(self) -> None:
        """Drop the added workspaces, the default workspace's computes, denial or removal, the operations
        and the write bucket, and set ``page_size``, ``workspace_page_size`` and ``stop_delay`` back to
        what they were built with; credentials and issued tokens stay valid.

        The default workspace's id changes too: azureml-core caches discovery results per workspace id
        in ``~/.azureml/.discovery``, and a fresh id makes every test see the same, complete call sequence.
        """
        with self._lock:
            self._workspaces = {self._default.key: self._default}
            self._default.clear()
            self._operations.clear()
            self.write_buckets = None
            for name, value in self._defaults.items():
                setattr(self, name, value)

    # ------------------------------------------------------------------------ server interface
    def service_for_host(self, host: str) -> str | None:
        if host == "login.microsoftonline.com":
            return "aad"
        if host == "management.azure.com":
            return "arm"
        m = _REGIONAL_RE.match(host)
        if m and m.group("region") in self._regions():
            return "azureml"
        return None

    def fault_response(self, service: str, status: int) -> Response:
        if service == "aad":
            body = p.aad_error(
                "temporarily_unavailable", 50000 + status % 1000, f"HTTP {status} (injected fault)."
            )
            return Response(status, body)
        code = _ARM_ERROR_CODES.get(status, f"Http{status}")
        return Response(status, p.arm_error(code, f"Injected fault: HTTP {status} {code}."))

    def handle(self, req: Request) -> Response:
        if req.service == "aad":
            return self.aad.handle(req)
        if req.service == "azureml" and req.path.rstrip("/") == "/discovery" and req.method == "GET":
            return Response(200, p.service_discovery(_region_of(req.host)))
        claims, unauthorized = self._authenticate(req)
        if unauthorized is not None:
            return unauthorized
        if req.service == "azureml":
            return self._regional(req, claims)
        buckets = self.write_buckets
        if buckets is None or req.method.upper() not in WRITE_METHODS:
            return self._arm(req, claims)
        sub = _SUB_RE.match(req.path)
        subscription = sub.group("sub") if sub else ""
        principal = str(claims.get("oid") or claims.get("appid") or "?")
        allowed, remaining, wait = buckets.take(subscription, principal)
        if not allowed:
            return self._throttled(claims, subscription, wait)
        response = self._arm(req, claims)
        response.headers = {**response.headers, REMAINING_WRITES: str(remaining)}
        return response

    def _authenticate(self, req: Request) -> tuple[dict, Response | None]:
        """The token's claims, or the 401 ARM answers: no token, one nobody issued, or the wrong audience."""
        scheme, _, token = (req.header("Authorization") or "").partition(" ")
        trusted = scheme.lower() == "bearer" and any(issuer.issued(token) for issuer in self._issuers)
        if not trusted:
            unauthorized = self.aad.check_bearer(req)
            if unauthorized is not None:
                return {}, unauthorized
        claims = _claims(token)
        audience = str(claims.get("aud", ""))
        if audience not in ARM_AUDIENCES:
            allowed = ",".join(f"'{a}'" for a in sorted(ARM_AUDIENCES, reverse=True))
            message = (
                f"The access token has been obtained for wrong audience or resource '{audience}'. It should "
                f"exactly match with one of the allowed audiences {allowed}."
            )
            return {}, Response(401, p.arm_error("InvalidAuthenticationTokenAudience", message))
        return claims, None

    def _throttled(self, claims: dict, subscription: str, wait: float) -> Response:
        seconds = max(1, math.ceil(wait))
        actor = claims.get("oid") or claims.get("appid") or "unknown"
        message = (
            f"Number of 'write' requests for subscription '{subscription}' actor '{actor}' exceeded. "
            f"Please try again after '{seconds}' seconds after additional tokens are available. "
            "Refer to https://aka.ms/arm-throttling"
        )
        headers = {"Retry-After": str(seconds), REMAINING_WRITES: "0", "x-ms-request-id": str(uuid.uuid4())}
        return Response(429, p.arm_error("SubscriptionRequestsThrottled", message), headers)

    # ------------------------------------------------------------------------ what exists
    def _regions(self) -> set[str]:
        with self._lock:
            return {w.region for w in self._workspaces.values()}

    def _subscription(self, sub: str) -> str | None:
        """The subscription's id as added, if it exists (a subscription exists while a workspace is in it)."""
        with self._lock:
            return next(
                (w.subscription_id for w in self._workspaces.values() if w.key[0] == sub.lower()), None
            )

    def _resource_group_exists(self, sub: str, rg: str) -> bool:
        with self._lock:
            return any(w.key[:2] == (sub.lower(), rg.lower()) for w in self._workspaces.values())

    def _missing_parent(self, sub: str, rg: str | None) -> Response | None:
        """404 for an unknown subscription, or an unknown resource group in it."""
        if self._subscription(sub) is None:
            message = f"The subscription '{sub}' could not be found."
            return Response(404, p.arm_error("SubscriptionNotFound", message))
        if rg is not None and not self._resource_group_exists(sub, rg):
            message = f"Resource group '{rg}' could not be found."
            return Response(404, p.arm_error("ResourceGroupNotFound", message))
        return None

    def _find(
        self, m: re.Match, req: Request, claims: dict
    ) -> tuple[StandInWorkspace | None, Response | None]:
        """The workspace a path names, or ARM's answer why the caller gets none: 404 for what does not
        exist (subscription, resource group, workspace), the workspace's denial for what it may not do."""
        sub, rg, name = m.group("sub"), m.group("rg"), m.group("ws")
        rest = (m.group("rest") or "").rstrip("/")
        missing = self._missing_parent(sub, rg)
        if missing is not None:
            return None, missing
        with self._lock:
            ws = self._workspaces.get(workspace_key(sub, rg, name))
        if ws is None or ws.removed:
            message = (
                f"The Resource 'Microsoft.MachineLearningServices/workspaces/{name}' under resource group "
                f"'{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            )
            return None, Response(404, p.arm_error("ResourceNotFound", message))
        if ws.denies(req.method, rest):
            return None, self._denied(ws, req, claims, rest)
        return ws, None

    def _denied(self, ws: StandInWorkspace, req: Request, claims: dict, rest: str) -> Response:
        status = ws.denial.status if ws.denial else 403
        if status != 403:
            code = _ARM_ERROR_CODES.get(status, f"Http{status}")
            return Response(status, p.arm_error(code, f"Denied by the stand-in: HTTP {status} {code}."))
        oid = claims.get("oid") or "unknown"
        client = claims.get("appid") or oid
        m = _COMPUTE_RE.match(rest)
        scope = ws.arm_id + (f"/computes/{m.group(1)}" if m else rest)  # an action's scope is its resource
        message = (
            f"The client '{client}' with object id '{oid}' does not have authorization to perform action "
            f"'{_action_name(req.method, rest)}' over scope '{scope}' or the scope is invalid. If access was "
            "recently granted, please refresh your credentials."
        )
        return Response(403, p.arm_error("AuthorizationFailed", message))

    # ------------------------------------------------------------------------ ARM
    def _arm(self, req: Request, claims: dict) -> Response:
        if not req.query.get("api-version"):  # ARM refuses every request without one
            message = "The api-version query parameter (?api-version=) is required for all requests."
            return Response(400, p.arm_error("MissingApiVersionParameter", message))
        path = req.path.rstrip("/")
        if path.lower() == "/subscriptions" and req.method == "GET":
            with self._lock:
                subscriptions = list(dict.fromkeys(w.subscription_id for w in self._workspaces.values()))
            body = {
                "count": {"type": "Total", "value": len(subscriptions)},
                "value": [p.subscription(sub, self.tenant_id) for sub in subscriptions],
            }
            return Response(200, body)
        m = re.match(r"^/subscriptions/([^/]+)$", path, re.IGNORECASE)
        if m and req.method == "GET":
            return self._missing_parent(m.group(1), None) or Response(
                200, p.subscription(self._subscription(m.group(1)) or m.group(1), self.tenant_id)
            )
        m = _LIST_RE.match(path)
        if m and req.method == "GET":
            return self._list_workspaces(req, m.group("sub"), m.group("rg"))
        m = _OP_RE.match(path)
        if m and req.method == "GET":
            results = m.group("kind").lower() == "computeoperationsresults"
            return self._operation(m.group("sub"), m.group("op"), results)
        m = _WS_RE.match(path)
        if m:
            ws, refused = self._find(m, req, claims)
            if ws is None:
                return refused
            rest = (m.group("rest") or "").rstrip("/")
            if rest == "" and req.method == "GET":
                return Response(200, self._workspace_json(ws))
            return self._computes_api(req, ws, rest, arm=True)
        message = f"The loopback ARM stand-in does not serve {req.method} {req.path}."
        return Response(404, p.arm_error("InvalidResourceType", message))

    def _list_workspaces(self, req: Request, sub: str, rg: str | None) -> Response:
        """ARM's ``Workspaces - List By Subscription`` / ``List By Resource Group``: paged, every
        workspace the caller may read (see :meth:`deny`), in the order they were added."""
        api_version = req.query["api-version"]
        missing = self._missing_parent(sub, rg)
        if missing is not None:
            return missing
        try:
            offset = int(req.query.get("$skipToken", "0"))
        except ValueError:
            return Response(400, p.arm_error("InvalidSkipToken", "Invalid $skipToken."))
        with self._lock:
            shown = [
                self._workspace_json(w)
                for w in self._workspaces.values()
                if w.listed and w.key[0] == sub.lower() and (rg is None or w.key[1] == rg.lower())
            ]
        body: dict = {"value": shown[offset : offset + self.workspace_page_size]}
        if offset + self.workspace_page_size < len(shown):  # the last page has no nextLink
            next_offset = offset + self.workspace_page_size
            body["nextLink"] = f"{ARM}{req.path}?api-version={quote(api_version)}&$skipToken={next_offset}"
        return Response(200, body)

    def _workspace_json(self, ws: StandInWorkspace) -> dict:
        hub_id = ws.hub.arm_id if ws.hub is not None else None
        return p.workspace(ws.arm_id, ws.name, ws.region, ws.workspace_id, self.tenant_id, ws.kind, hub_id)

    def listing_entry(self, workspace: StandInWorkspace, arm_id: str | None = None) -> dict:
        """The item ARM's listings (and GET) show for ``workspace``, optionally under another spelling of
        its ``arm_id``: for a test's own listing page (``add_fault(..., status=200, body=...)``)."""
        body = self._workspace_json(workspace)
        if arm_id is not None:
            body["id"] = arm_id
        return body

    def _operation(self, sub: str, op_id: str, results: bool) -> Response:
        with self._lock:
            op = self._operations.get(op_id)
            if op is None or op.workspace.subscription_id.lower() != sub.lower():
                return Response(404, p.arm_error("OperationNotFound", f"Operation '{op_id}' was not found."))
            compute = op.workspace.computes.get(op.compute)
            done = compute is None or current(compute).state != "Stopping"
        if results:  # the Location URL: 202 while running, then 200
            return Response(200, b"") if done else Response(202, b"", {"Retry-After": "1"})
        ws = op.workspace
        return Response(200, p.operation_status(ws.subscription_id, ws.region, op_id, op.started, done))

    # ------------------------------------------------------------------------ regional host
    def _regional(self, req: Request, claims: dict) -> Response:
        path = req.path.rstrip("/")
        region = _region_of(req.host)
        if path.lower().startswith("/rp/workspaces/"):
            m = _WS_RE.match(path[len("/rp/workspaces") :])
            if m:
                ws, refused = self._find(m, req, claims)
                if ws is None:
                    return refused
                if ws.region != region:  # each region's API serves the workspaces of that region
                    message = f"Workspace '{ws.name}' is in region {ws.region}, not {region}."
                    return Response(404, p.aml_error(region, "WorkspaceNotFound", message))
                return self._computes_api(req, ws, (m.group("rest") or "").rstrip("/"), arm=False)
        message = f"The regional stand-in does not serve {req.method} {req.path}."
        return Response(404, p.aml_error(region, "NotFound", message))

    # ------------------------------------------------------------------------ computes (both hosts)
    def _computes_api(self, req: Request, ws: StandInWorkspace, rest: str, arm: bool) -> Response:
        if rest == "/computes" and req.method == "GET":
            return self._list(req, ws, arm)
        m = _COMPUTE_RE.match(rest)
        if not m:
            message = f"Not served by the stand-in: {req.method} {req.path}"
            return Response(404, p.aml_error(ws.region, "NotFound", message))
        name, action = m.group(1), (m.group(2) or "").lower()
        with self._lock:
            compute = ws.computes.get(name)
            if compute is None:
                message = f"Compute '{name}' not found in workspace '{ws.name}'."
                return Response(404, p.aml_error(ws.region, "NotFound", message))
            if not action and req.method == "GET":
                return Response(200, self._compute_json(ws, current(compute)))
            if action and req.method == "POST":
                return self._action(ws, compute, action)
        message = f"{req.method} is not supported on {req.path}"
        return Response(405, p.arm_error("MethodNotAllowed", message))

    def _list(self, req: Request, ws: StandInWorkspace, arm: bool) -> Response:
        try:
            offset = int(req.query.get("$skipToken", "0"))
        except ValueError:
            return Response(400, p.aml_error(ws.region, "BadArgument", "Invalid $skipToken."))
        with self._lock:
            everything = [self._compute_json(ws, current(c)) for c in ws.computes.values()]
        body: dict = {"value": everything[offset : offset + self.page_size]}
        if offset + self.page_size < len(everything):  # the last page has no nextLink at all
            base = ARM if arm else f"https://{ws.regional_host}/rp/workspaces"
            api_version = quote(req.query.get("api-version", API_VERSION_RP))
            next_offset = offset + self.page_size
            body["nextLink"] = (
                f"{base}{ws.arm_id}/computes?api-version={api_version}&$skipToken={next_offset}"
            )
        return Response(200, body)

    def _action(self, ws: StandInWorkspace, c: Compute, action: str) -> Response:
        current(c)
        if c.compute_type != "ComputeInstance":
            message = f"Compute '{c.name}' of type {c.compute_type} does not support {action}."
            return Response(400, p.aml_error(ws.region, "BadArgument", message))
        if action != "stop":
            message = f"The stand-in only implements stop, not {action}."
            return Response(400, p.aml_error(ws.region, "NotSupported", message))
        if c.state == "Stopping":
            message = (
                f"There is already an active operation submitted for compute instance '{c.name}' (Stop). "
                "Please wait for it to complete."
            )
            return Response(409, p.arm_error("Conflict", message))
        if c.state not in STOPPABLE_STATES:
            message = (
                f"Compute instance '{c.name}' is in state '{c.state}'; the Stop operation is not allowed."
            )
            return Response(409, p.arm_error("Conflict", message))
        op = _Operation(id=str(uuid.uuid4()), workspace=ws, compute=c.name, started=p.now_iso())
        self._operations[op.id] = op
        c.state, c.stop_at = "Stopping", time.monotonic() + self.stop_delay
        c.operation_id, c.last_operation, c.modified_on = op.id, "Stop", p.now_iso()
        ops = f"{ARM}/subscriptions/{ws.subscription_id}{p.PROVIDER}/locations/{ws.region}"
        headers = {
            "Azure-AsyncOperation": f"{ops}/computeOperationsStatus/{op.id}?api-version={STATUS_API_VERSION}",
            "Location": f"{ops}/computeOperationsResults/{op.id}?api-version={STATUS_API_VERSION}",
            "Retry-After": "1",
            "x-ms-request-id": str(uuid.uuid4()),
        }
        return Response(202, b"", headers)

    def _compute_json(self, ws: StandInWorkspace, c: Compute) -> dict:
        if c.compute_type == "ComputeInstance":
            last_operation = None
            if c.last_operation:
                last_operation = {
                    "operationName": c.last_operation,
                    "operationTime": c.modified_on,
                    "operationStatus": "InProgress" if c.state == "Stopping" else "Succeeded",
                    "operationTrigger": "User",
                }
            properties = p.compute_instance_properties(
                c.name,
                ws.region,
                c.state,
                c.created_by,
                c.object_id,
                self.tenant_id,
                last_operation,
                c.vm_size,
            )
        else:
            properties = p.aml_compute_properties(c.modified_on)
        return p.compute(
            ws.compute_arm_id(c.name),
            c.name,
            ws.region,
            c.compute_type,
            c.created_on,
            c.modified_on,
            properties,
            c.tags,
        )


def _region_of(host: str) -> str:
    return host.split(".", 1)[0].lower()


def _action_name(method: str, rest: str) -> str:
    """The RBAC action ARM checks for a call on a workspace (``rest``: the path below its id)."""
    base = "Microsoft.MachineLearningServices/workspaces"
    m = _COMPUTE_RE.match(rest)
    if m and m.group(2):
        return f"{base}/computes/{m.group(2).lower()}/action"
    what = f"{base}/computes" if rest.lower().startswith("/computes") else base
    return f"{what}/read" if method.upper() == "GET" else f"{what}/write"


def _claims(token: str) -> dict:
    """The payload of a JWT we issued ourselves (no signature check: only trusted tokens get here)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
