"""Stand-in for Entra ID (AAD), Azure Resource Manager and the regional Azure ML API.

It answers exactly the calls that unmodified ``azureml-core`` makes for::

    ws = Workspace(sub, rg, name, auth=ServicePrincipalAuthentication(tenant, client_id, secret))
    ComputeTarget.list(ws)            # regional host, follows nextLink
    ComputeInstance(ws, name).stop()  # GET on the regional host, then POST .../stop on ARM

Hosts and the service names used in the request log and in faults:

* ``login.microsoftonline.com`` -> ``"aad"``: OpenID configuration, instance discovery and the
  client-credentials token endpoint. Tokens are HS256 JWTs (the SDK decodes them without checking the
  signature, e.g. for ``exp``) and are remembered, so ARM/regional calls can demand one of them.
  Tokens of other issuers are accepted too once trusted with :meth:`AzureMLStandIn.accept_tokens_from`
  (the managed-identity endpoint, :mod:`loopback.identity`). A token for another resource than ARM
  gets ARM's 401 ``InvalidAuthenticationTokenAudience``.
* ``management.azure.com`` -> ``"arm"``: subscriptions, the workspace (its ``discoveryUrl`` points at
  the regional host), the paged compute list (``nextLink``, as the ARM REST API serves it),
  ``POST .../stop`` (202 + ``Azure-AsyncOperation`` + ``Location``; 409 ``Conflict`` when stopped,
  stopping or in another operation) and the async-operation URLs. Optionally ARM's write throttling:
  :meth:`AzureMLStandIn.enforce_write_bucket` (off by default) gives every principal a token bucket
  of writes; a write past it gets 429 ``SubscriptionRequestsThrottled`` with ``Retry-After``, and
  every write answer says ``x-ms-ratelimit-remaining-subscription-writes``.
* ``<region>.api.azureml.ms`` -> ``"azureml"``: ``/discovery`` (anonymous, as azureml-core fetches it
  without a token) and ``/rp/workspaces/...computes[/{name}]``.

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
from dataclasses import dataclass, field, replace
from typing import Protocol
from urllib.parse import quote

from . import azureml_payloads as p
from .aad import AzureADStandIn
from .server import Request, Response
from .traffic import Traffic

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
COMPUTE_TYPES = ("ComputeInstance", "AmlCompute")
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

_WS_RE = re.compile(
    rf"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+){p.PROVIDER}"
    r"/workspaces/(?P<ws>[^/]+)(?P<rest>/.*)?$",
    re.IGNORECASE,
)
_OP_RE = re.compile(
    rf"^/subscriptions/(?P<sub>[^/]+){p.PROVIDER}/locations/(?P<loc>[^/]+)/"
    r"(?P<kind>computeOperationsStatus|computeOperationsResults)/(?P<op>[^/]+)$",
    re.IGNORECASE,
)
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


@dataclass
class _Operation:
    id: str
    compute: str
    started: str


class TokenIssuer(Protocol):
    """Another token service whose tokens ARM accepts (e.g. :class:`~loopback.identity.ManagedIdentityStandIn`)."""

    def issued(self, token: str) -> bool: ...

    def revoke_tokens(self) -> None: ...


class WriteBuckets:
    """ARM's write throttling: per principal, a bucket of ``capacity`` writes refilled at
    ``refill_per_second``. The stand-in's own implementation, independent of the app's pacing."""

    def __init__(self, capacity: int, refill_per_second: float, clock: Callable[[], float] = time.monotonic):
        self.capacity, self.refill_per_second, self._clock = capacity, refill_per_second, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # principal -> (tokens, when counted)
        self._lock = threading.Lock()

    def take(self, principal: str) -> tuple[bool, int, float]:
        """(allowed, writes remaining, seconds until the next token) for one write by ``principal``."""
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(principal, (float(self.capacity), now))
            tokens = min(float(self.capacity), tokens + (now - then) * self.refill_per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[principal] = (tokens, now)
            return allowed, int(tokens), 0.0 if allowed else (1.0 - tokens) / self.refill_per_second


class AzureMLStandIn:
    """Fake AAD + ARM + regional Azure ML for one tenant/subscription/workspace.

    Seed computes with :meth:`seed`, inspect them with :meth:`instance` / :meth:`instances`. Faults and
    the request log live in :attr:`traffic` (shared with the SendGrid stand-in under
    :class:`~loopback.stack.StandIns`). ``page_size`` and ``stop_delay`` may be changed at any time.
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
    ):
        self.aad = AzureADStandIn(tenant_id, client_id, client_secret, token_lifetime)
        self.tenant_id, self.client_id, self.client_secret = tenant_id, client_id, client_secret
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace = workspace
        self.region = region
        self.page_size = page_size
        self.stop_delay = stop_delay
        self._defaults = {"page_size": page_size, "stop_delay": stop_delay}
        self.traffic = traffic if traffic is not None else Traffic()
        self.workspace_id = str(uuid.uuid4())
        self._computes: dict[str, Compute] = {}
        self._operations: dict[str, _Operation] = {}
        self._lock = threading.RLock()
        self._issuers: list[TokenIssuer] = []
        self.write_buckets: WriteBuckets | None = None

    # ------------------------------------------------------------------------ names and URLs
    @property
    def regional_host(self) -> str:
        return f"{self.region}.api.azureml.ms"

    @property
    def workspace_arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"{p.PROVIDER}/workspaces/{self.workspace}"
        )

    def compute_arm_id(self, name: str) -> str:
        return f"{self.workspace_arm_id}/computes/{name}"

    # ------------------------------------------------------------------------ test API
    def seed(
        self,
        name: str,
        state: str = "Running",
        created_by: str = "alice@contoso.com",
        compute_type: str = "ComputeInstance",
        tags: dict[str, str] | None = None,
    ) -> None:
        """Add (or replace) a compute; ``created_by`` is the creator's UPN (``createdBy.userName``).

        ``tags`` are the compute's ARM tags (name -> value), served as the top-level ``"tags"`` of every
        representation of it: list pages and single GET, on the ARM and the regional host.
        """
        if compute_type not in COMPUTE_TYPES:
            raise ValueError(f"compute_type must be one of {COMPUTE_TYPES}")
        now = p.now_iso()
        object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, created_by))
        with self._lock:
            self._computes[name] = Compute(
                name, compute_type, state, created_by, now, now, object_id, tags=dict(tags or {})
            )

    def instance(self, name: str) -> str:
        """Current state of a seeded compute ("Running", "Stopping", "Stopped", ...). KeyError if unknown."""
        with self._lock:
            return self._current(self._computes[name]).state

    def instances(self) -> dict[str, str]:
        """All seeded computes, name -> current state, in seeding order."""
        with self._lock:
            return {name: self._current(c).state for name, c in self._computes.items()}

    def compute(self, name: str) -> Compute:
        """A copy of the full record of a seeded compute."""
        with self._lock:
            c = self._current(self._computes[name])
            return replace(c, tags=dict(c.tags))

    def stopped_names(self) -> list[str]:
        """Names whose ``POST .../computes/{name}/stop`` was answered 202, in completion order."""
        records = self.traffic.records(
            service="arm", method="POST", path_regex=r"/computes/[^/]+/stop$", status=202
        )
        return [rec.path.rsplit("/", 2)[-2] for rec in records]

    def revoke_tokens(self) -> None:
        """Forget every issued token: the next ARM/regional call gets 401 (expired-token scenario)."""
        self.aad.revoke_tokens()
        for issuer in self._issuers:
            issuer.revoke_tokens()

    def accept_tokens_from(self, issuer: TokenIssuer) -> None:
        """Trust the bearer tokens ``issuer`` issued (besides Azure AD's), e.g. a managed identity's."""
        self._issuers.append(issuer)

    def enforce_write_bucket(self, capacity: int = 200, refill_per_second: float = 10.0) -> WriteBuckets:
        """Throttle ARM writes as ARM does: per principal, ``capacity`` writes, refilled at
        ``refill_per_second``; a write past the bucket gets 429 with ``Retry-After`` (whole seconds).
        Off until called; :meth:`reset` turns it off again."""
        self.write_buckets = WriteBuckets(capacity, refill_per_second)
        return self.write_buckets

    def reset(self) -> None:
        """Drop computes and operations and the write bucket, and set ``page_size`` and ``stop_delay`` back
        to what they were built with; credentials and issued tokens stay valid.

        The workspace id changes too: azureml-core caches discovery results per workspace id in
        ``~/.azureml/.discovery``, and a fresh id makes every test see the same, complete call sequence.
        """
        with self._lock:
            self._computes.clear()
            self._operations.clear()
            self.workspace_id = str(uuid.uuid4())
            self.write_buckets = None
            for name, value in self._defaults.items():
                setattr(self, name, value)

    # ------------------------------------------------------------------------ server interface
    def service_for_host(self, host: str) -> str | None:
        known = {
            "login.microsoftonline.com": "aad",
            "management.azure.com": "arm",
            self.regional_host.lower(): "azureml",
        }
        return known.get(host)

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
            return Response(200, p.service_discovery(self.region))
        claims, unauthorized = self._authenticate(req)
        if unauthorized is not None:
            return unauthorized
        if req.service == "azureml":
            return self._regional(req)
        buckets = self.write_buckets
        if buckets is None or req.method.upper() not in WRITE_METHODS:
            return self._arm(req)
        allowed, remaining, wait = buckets.take(str(claims.get("oid") or claims.get("appid") or "?"))
        if not allowed:
            return self._throttled(claims, wait)
        response = self._arm(req)
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

    def _throttled(self, claims: dict, wait: float) -> Response:
        seconds = max(1, math.ceil(wait))
        actor = claims.get("oid") or claims.get("appid") or "unknown"
        message = (
            f"Number of 'write' requests for subscription '{self.subscription_id}' actor '{actor}' exceeded. "
            f"Please try again after '{seconds}' seconds after additional tokens are available. "
            "Refer to https://aka.ms/arm-throttling"
        )
        headers = {"Retry-After": str(seconds), REMAINING_WRITES: "0", "x-ms-request-id": str(uuid.uuid4())}
        return Response(429, p.arm_error("SubscriptionRequestsThrottled", message), headers)

    # ------------------------------------------------------------------------ ARM
    def _arm(self, req: Request) -> Response:
        path = req.path.rstrip("/")
        if path == "/subscriptions" and req.method == "GET":
            body = {
                "count": {"type": "Total", "value": 1},
                "value": [p.subscription(self.subscription_id, self.tenant_id)],
            }
            return Response(200, body)
        m = re.match(r"^/subscriptions/([^/]+)$", path, re.IGNORECASE)
        if m and req.method == "GET":
            if m.group(1).lower() != self.subscription_id.lower():
                return self._subscription_not_found(m.group(1))
            return Response(200, p.subscription(self.subscription_id, self.tenant_id))
        m = _OP_RE.match(path)
        if m and req.method == "GET":
            return self._operation(
                m.group("op"), results=m.group("kind").lower() == "computeoperationsresults"
            )
        m = _WS_RE.match(path)
        if m:
            missing = self._check_workspace(m)
            if missing is not None:
                return missing
            rest = (m.group("rest") or "").rstrip("/")
            if rest == "" and req.method == "GET":
                body = p.workspace(
                    self.workspace_arm_id, self.workspace, self.region, self.workspace_id, self.tenant_id
                )
                return Response(200, body)
            return self._computes_api(req, rest, arm=True)
        message = f"The loopback ARM stand-in does not serve {req.method} {req.path}."
        return Response(404, p.arm_error("InvalidResourceType", message))

    def _subscription_not_found(self, sub: str) -> Response:
        return Response(
            404, p.arm_error("SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
        )

    def _check_workspace(self, m: re.Match) -> Response | None:
        sub, rg, ws = m.group("sub"), m.group("rg"), m.group("ws")
        if sub.lower() != self.subscription_id.lower():
            return self._subscription_not_found(sub)
        if rg.lower() != self.resource_group.lower():
            return Response(
                404, p.arm_error("ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            )
        if ws.lower() != self.workspace.lower():
            message = (
                f"The Resource 'Microsoft.MachineLearningServices/workspaces/{ws}' under resource group "
                f"'{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            )
            return Response(404, p.arm_error("ResourceNotFound", message))
        return None

    def _operation(self, op_id: str, results: bool) -> Response:
        with self._lock:
            op = self._operations.get(op_id)
            if op is None:
                return Response(404, p.arm_error("OperationNotFound", f"Operation '{op_id}' was not found."))
            compute = self._computes.get(op.compute)
            done = compute is None or self._current(compute).state != "Stopping"
        if results:  # the Location URL: 202 while running, then 200
            return Response(200, b"") if done else Response(202, b"", {"Retry-After": "1"})
        return Response(200, p.operation_status(self.subscription_id, self.region, op_id, op.started, done))

    # ------------------------------------------------------------------------ regional host
    def _regional(self, req: Request) -> Response:
        path = req.path.rstrip("/")
        if path.lower().startswith("/rp/workspaces/"):
            m = _WS_RE.match(path[len("/rp/workspaces") :])
            if m:
                missing = self._check_workspace(m)
                if missing is not None:
                    return missing
                return self._computes_api(req, (m.group("rest") or "").rstrip("/"), arm=False)
        message = f"The regional stand-in does not serve {req.method} {req.path}."
        return Response(404, p.aml_error(self.region, "NotFound", message))

    # ------------------------------------------------------------------------ computes (both hosts)
    def _computes_api(self, req: Request, rest: str, arm: bool) -> Response:
        if rest == "/computes" and req.method == "GET":
            return self._list(req, arm)
        m = _COMPUTE_RE.match(rest)
        if not m:
            message = f"Not served by the stand-in: {req.method} {req.path}"
            return Response(404, p.aml_error(self.region, "NotFound", message))
        name, action = m.group(1), (m.group(2) or "").lower()
        with self._lock:
            compute = self._computes.get(name)
            if compute is None:
                message = f"Compute '{name}' not found in workspace '{self.workspace}'."
                return Response(404, p.aml_error(self.region, "NotFound", message))
            if not action and req.method == "GET":
                return Response(200, self._compute_json(self._current(compute)))
            if action and req.method == "POST":
                return self._action(compute, action)
        message = f"{req.method} is not supported on {req.path}"
        return Response(405, p.arm_error("MethodNotAllowed", message))

    def _list(self, req: Request, arm: bool) -> Response:
        try:
            offset = int(req.query.get("$skipToken", "0"))
        except ValueError:
            return Response(400, p.aml_error(self.region, "BadArgument", "Invalid $skipToken."))
        with self._lock:
            everything = [self._compute_json(self._current(c)) for c in self._computes.values()]
        body: dict = {"value": everything[offset : offset + self.page_size]}
        if offset + self.page_size < len(everything):  # the last page has no nextLink at all
            base = "https://management.azure.com" if arm else f"https://{self.regional_host}/rp/workspaces"
            api_version = quote(req.query.get("api-version", API_VERSION_RP))
            next_offset = offset + self.page_size
            body["nextLink"] = (
                f"{base}{self.workspace_arm_id}/computes?api-version={api_version}&$skipToken={next_offset}"
            )
        return Response(200, body)

    def _current(self, c: Compute) -> Compute:
        """Advance a Stopping instance to Stopped once ``stop_at`` has passed (caller holds the lock)."""
        if c.state == "Stopping" and c.stop_at is not None and time.monotonic() >= c.stop_at:
            c.state, c.stop_at, c.modified_on = "Stopped", None, p.now_iso()
        return c

    def _action(self, c: Compute, action: str) -> Response:
        self._current(c)
        if c.compute_type != "ComputeInstance":
            message = f"Compute '{c.name}' of type {c.compute_type} does not support {action}."
            return Response(400, p.aml_error(self.region, "BadArgument", message))
        if action != "stop":
            message = f"The stand-in only implements stop, not {action}."
            return Response(400, p.aml_error(self.region, "NotSupported", message))
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
        op = _Operation(id=str(uuid.uuid4()), compute=c.name, started=p.now_iso())
        self._operations[op.id] = op
        c.state, c.stop_at = "Stopping", time.monotonic() + self.stop_delay
        c.operation_id, c.last_operation, c.modified_on = op.id, "Stop", p.now_iso()
        sub, region = self.subscription_id, self.region
        ops = f"https://management.azure.com/subscriptions/{sub}{p.PROVIDER}/locations/{region}"
        headers = {
            "Azure-AsyncOperation": f"{ops}/computeOperationsStatus/{op.id}?api-version={STATUS_API_VERSION}",
            "Location": f"{ops}/computeOperationsResults/{op.id}?api-version={STATUS_API_VERSION}",
            "Retry-After": "1",
            "x-ms-request-id": str(uuid.uuid4()),
        }
        return Response(202, b"", headers)

    def _compute_json(self, c: Compute) -> dict:
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
                c.name, self.region, c.state, c.created_by, c.object_id, self.tenant_id, last_operation
            )
        else:
            properties = p.aml_compute_properties(c.modified_on)
        return p.compute(
            self.compute_arm_id(c.name),
            c.name,
            self.region,
            c.compute_type,
            c.created_on,
            c.modified_on,
            properties,
            c.tags,
        )


def _claims(token: str) -> dict:
    """The payload of a JWT we issued ourselves (no signature check: only trusted tokens get here)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
