"""Stand-in for the managed-identity endpoint App Service and Azure Functions give every app.

In Azure the platform sets two environment variables in the app's process: ``IDENTITY_ENDPOINT``
(a plain-HTTP URL on the host, e.g. ``http://127.0.0.1:41741/msi/token``) and ``IDENTITY_HEADER`` (a
secret that changes with every restart). azure-identity's ``ManagedIdentityCredential`` (through
MSAL) then asks::

    GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=https://management.azure.com[&client_id=...]
    X-IDENTITY-HEADER: {IDENTITY_HEADER}

and gets ``{"access_token", "expires_on" (epoch seconds, a string), "resource", "token_type",
"client_id"}``. Without ``client_id`` (or ``object_id`` / ``mi_res_id``) the token is for the app's
system-assigned identity, with one for that user-assigned identity.

This stand-in answers exactly that on 127.0.0.1 (plain HTTP, reached directly: ``NO_PROXY`` holds
127.0.0.1), and like the real endpoint: a missing or wrong ``X-IDENTITY-HEADER`` is a 401; an unknown
user-assigned identity (when :attr:`user_assigned` names the known ones), a missing ``resource`` or
another api-version a 400; errors are ``{"statusCode", "message", "correlationId"}``. Tokens are HS256
JWTs naming the identity (``oid``, ``appid``, ``xms_mirid``) and the requested resource (``aud``); the
AzureML stand-in accepts them once :meth:`AzureMLStandIn.accept_tokens_from` was called with this
object (:class:`~loopback.stack.StandIns` does it). Requests are recorded in the shared Traffic log as
service ``"identity"`` (faults apply: ``add_fault(service="identity", ...)``); the global network
latency does not, as the real endpoint is on the same host.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid

from .server import Request, Response, StandInServer
from .traffic import Traffic

SERVICE = "identity"
PATH = "/msi/token"
API_VERSION = "2019-08-01"
#: The user-assigned identity every stand-in knows unless told otherwise (its client id).
USER_ASSIGNED_CLIENT_ID = "7a3e5c1b-0000-4000-8000-0000000005e1"


class ManagedIdentityStandIn:
    """The identity endpoint of one app, for one tenant. :meth:`start` / :meth:`stop` its server.

    ``user_assigned``: client ids of the user-assigned identities the app has (None: any client id is
    accepted, each a distinct identity). ``system_assigned``: whether the app has one (without it, a
    request that names no identity gets a 400, as in Azure).
    """

    def __init__(
        self,
        tenant_id: str = "5f1c1e4d-0000-4000-8000-00000000a11d",
        user_assigned: tuple[str, ...] | None = (USER_ASSIGNED_CLIENT_ID,),
        system_assigned: bool = True,
        token_lifetime: int = 86399,
        traffic: Traffic | None = None,
        app_resource_id: str = "/subscriptions/3b1c0d7e-0000-4000-8000-000000005ab5/resourceGroups/"
        "rg-functions/providers/Microsoft.Web/sites/func-autoshutdown",
    ):
        self.tenant_id = tenant_id
        self.user_assigned = None if user_assigned is None else tuple(i.lower() for i in user_assigned)
        self.system_assigned = system_assigned
        self.token_lifetime = token_lifetime
        self.traffic = traffic if traffic is not None else Traffic()
        self.app_resource_id = app_resource_id
        #: The secret of ``IDENTITY_HEADER``; a fresh one per stand-in, as per App Service restart.
        self.header = secrets.token_urlsafe(24)
        #: The system-assigned identity: its client (application) id and object (principal) id.
        self.system_client_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{app_resource_id}#client"))
        self.system_object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{app_resource_id}#principal"))
        self._signing_key = secrets.token_bytes(32)
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self.server: StandInServer | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ManagedIdentityStandIn:
        if self.server is None:
            self.server = StandInServer(None, [self], self.traffic, network_latency=False)
            self.server.thread_name = "standins-identity"
            self.server.start()
        return self

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> ManagedIdentityStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        if self.server is None:
            raise RuntimeError("the identity stand-in is not started")
        return f"http://127.0.0.1:{self.server.port}{PATH}"

    @property
    def env(self) -> dict[str, str]:
        """What App Service sets in the app's environment: ``IDENTITY_ENDPOINT``, ``IDENTITY_HEADER``."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.header}

    # ------------------------------------------------------------------ tokens
    def issued(self, token: str) -> bool:
        with self._lock:
            return token in self._tokens

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def user_assigned_object_id(self, client_id: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"user-assigned#{client_id.lower()}"))

    # ------------------------------------------------------------------ server interface
    def service_for_host(self, host: str) -> str | None:
        return SERVICE if host in ("127.0.0.1", "localhost") else None

    def fault_response(self, service: str, status: int) -> Response:
        return _error(status, f"Injected fault: HTTP {status}.")

    def handle(self, req: Request) -> Response:
        if req.path.rstrip("/") != PATH:
            return _error(404, f"No such endpoint: {req.path}.")
        if req.method != "GET":
            return _error(405, f"{req.method} is not supported; use GET.")
        secret = req.header("X-IDENTITY-HEADER")
        if not secret or not hmac.compare_digest(secret, self.header):
            return _error(401, "Unauthorized: the X-IDENTITY-HEADER is missing or does not match.")
        if req.query.get("api-version") != API_VERSION:
            return _error(400, f"The api-version '{req.query.get('api-version')}' is not supported.")
        resource = req.query.get("resource", "").strip()
        if not resource:
            return _error(400, "The 'resource' parameter is required.")
        selectors = {
            k: req.query[k] for k in ("client_id", "object_id", "principal_id", "mi_res_id") if k in req.query
        }
        identity = self._identity(selectors)
        if identity is None:
            return _error(400, "Unable to load the proper Managed Identity.")
        client_id, object_id, resource_id = identity
        token, expires_on = self._issue(resource, client_id, object_id, resource_id)
        body = {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }
        return Response(200, body)

    def _identity(self, selectors: dict[str, str]) -> tuple[str, str, str] | None:
        """(client id, object id, ARM resource id) of the identity asked for, or None if the app has none."""
        if not selectors:
            if not self.system_assigned:
                return None
            return self.system_client_id, self.system_object_id, self.app_resource_id
        if set(selectors) != {"client_id"}:
            return None  # the stand-in knows user-assigned identities by client id only
        client_id = selectors["client_id"].lower()
        if self.user_assigned is not None and client_id not in self.user_assigned:
            return None
        rg = self.app_resource_id.split("/providers/")[0]
        resource_id = f"{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uami-{client_id[:8]}"
        return client_id, self.user_assigned_object_id(client_id), resource_id

    def _issue(self, resource: str, client_id: str, object_id: str, resource_id: str) -> tuple[str, int]:
        now = int(time.time())
        expires_on = now + self.token_lifetime
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": expires_on,
            "appid": client_id,
            "appidacr": "2",
            "idp": f"https://sts.windows.net/{self.tenant_id}/",
            "idtyp": "app",
            "oid": object_id,
            "sub": object_id,
            "tid": self.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
            "xms_mirid": resource_id,
        }
        header = _b64url(json.dumps({"typ": "JWT", "alg": "HS256", "kid": "standin-msi"}).encode())
        signing_input = f"{header}.{_b64url(json.dumps(claims).encode())}"
        signature = _b64url(hmac.new(self._signing_key, signing_input.encode(), hashlib.sha256).digest())
        token = f"{signing_input}.{signature}"
        with self._lock:
            self._tokens.add(token)
        return token, expires_on


def _error(status: int, message: str) -> Response:
    return Response(status, {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
