"""Stand-in for Entra ID (Azure AD) at login.microsoftonline.com: what MSAL calls for a client-credentials
sign-in (instance discovery, OpenID configuration, token), and the bearer check ARM and the regional API
do with the tokens it issued. Tokens are HS256 JWTs: azureml-core decodes them without checking the
signature (e.g. for `exp` and `tid`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from urllib.parse import parse_qsl

from . import azureml_payloads as p
from .server import Request, Response


class AzureADStandIn:
    def __init__(self, tenant_id: str, client_id: str, client_secret: str, token_lifetime: int = 3599):
        self.tenant_id, self.client_id, self.client_secret = tenant_id, client_id, client_secret
        self.token_lifetime = token_lifetime
        self._signing_key = secrets.token_bytes(32)
        self._tokens: set[str] = set()
        self._lock = threading.Lock()

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def handle(self, req: Request) -> Response:
        parts = [part for part in req.path.split("/") if part]
        if parts[:3] == ["common", "discovery", "instance"]:
            return Response(200, p.instance_discovery())
        if not parts:
            return Response(404, p.aad_error("invalid_request", 900144, "Unknown endpoint."))
        tenant, rest = parts[0], "/".join(parts[1:])
        if tenant.lower() != self.tenant_id.lower():
            return Response(
                400,
                p.aad_error(
                    "invalid_tenant",
                    90002,
                    f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                    "signing into the correct cloud. Check with your subscription administrator, this may "
                    "happen if there are no active subscriptions for the tenant.",
                ),
            )
        if req.method == "GET" and rest in (
            "v2.0/.well-known/openid-configuration",
            ".well-known/openid-configuration",
        ):
            return Response(200, p.openid_configuration(self.tenant_id))
        if req.method == "POST" and rest in ("oauth2/v2.0/token", "oauth2/token"):
            return self._token(req)
        return Response(404, p.aad_error("invalid_request", 900144, f"Unknown endpoint /{rest}."))

    def _token(self, req: Request) -> Response:
        form = dict(parse_qsl(req.body.decode(), keep_blank_values=True))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = req.header("Authorization") or ""
        if auth.lower().startswith("basic "):  # client_secret_basic
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if form.get("grant_type") != "client_credentials":
            error = p.aad_error(
                "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
            return Response(400, error)
        if client_id != self.client_id:
            error = p.aad_error(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant_id}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant. You may have sent "
                "your authentication request to the wrong tenant.",
            )
            return Response(400, error)
        if not secret or not hmac.compare_digest(secret, self.client_secret):
            error = p.aad_error(
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{self.client_id}'.",
            )
            return Response(401, error)
        # scope "https://management.core.windows.net//.default" -> aud "https://management.core.windows.net/"
        scopes = form.get("scope", "").split()
        audience = next((s[: -len("/.default")] for s in scopes if s.endswith("/.default")), "")
        token = self._issue_token(audience or "https://management.core.windows.net/")
        body = {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }
        return Response(200, body)

    def _issue_token(self, audience: str) -> str:
        now = int(time.time())
        app_oid = str(uuid.uuid5(uuid.NAMESPACE_URL, self.client_id))
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime,
            "appid": self.client_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": app_oid,
            "sub": app_oid,
            "tid": self.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        header = _b64url(json.dumps({"typ": "JWT", "alg": "HS256", "kid": "standin"}).encode())
        signing_input = f"{header}.{_b64url(json.dumps(claims).encode())}"
        signature = _b64url(hmac.new(self._signing_key, signing_input.encode(), hashlib.sha256).digest())
        token = f"{signing_input}.{signature}"
        with self._lock:
            self._tokens.add(token)
        return token

    def check_bearer(self, req: Request) -> Response | None:
        scheme, _, token = (req.header("Authorization") or "").partition(" ")
        with self._lock:
            if scheme.lower() == "bearer" and token in self._tokens:
                return None
        authority = f"https://login.microsoftonline.com/{self.tenant_id}"
        challenge = {"WWW-Authenticate": f'Bearer authorization_uri="{authority}", error="invalid_token"'}
        if not scheme:
            error = p.arm_error(
                "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        else:
            error = p.arm_error("InvalidAuthenticationToken", "The access token is invalid or has expired.")
        return Response(401, error, challenge)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
