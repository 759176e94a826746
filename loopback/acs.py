"""Stand-in for Azure Communication Services Email (host ``<resource>.communication.azure.com``,
service ``"acs"``), as azure-communication-email 1.1.0 calls it.

``POST /emails:send?api-version=...`` checks the caller the way the service does: an ``HMAC-SHA256``
signature made with the resource's access key (what the SDK sends for a connection string: the
signed string ``VERB\\npath?query\\nx-ms-date;host;x-ms-content-sha256`` is recomputed and compared,
the body hash too) or an Entra ID bearer token for ``https://communication.azure.com`` (issued by the
Azure AD stand-in or another trusted issuer, see :meth:`AcsStandIn.accept_tokens_from`, or one of
:attr:`AcsStandIn.tokens`); else 401 ``Denied``. It validates the body
against ``data/acs-email-send-request.schema.json`` (the spec's EmailMessage; 400 listing every
violation), checks the sender against :attr:`linked_domains` / :attr:`sender_usernames` (404
``DomainNotLinked``, 400 ``InvalidSenderUserName``), records the mail in :attr:`outbox` and answers
202 with ``Operation-Location`` and ``operation-id`` and the body ``{"id": ..., "status": "Running"}``.

``GET /emails/operations/{id}?api-version=...`` answers ``Running`` for the first
:attr:`running_polls` reads (with ``retry-after`` when :attr:`status_retry_after` is set, as the
service does for a non-terminal status), then ``Succeeded`` — or ``Failed`` with the error given to
:meth:`fail_recipient` for a mail to that address. Faults go through the shared Traffic
(``add_fault("acs", ...)``); answers without a body get the service's error JSON and
``x-ms-error-code``.

The error codes for a sender the resource may not use (``DomainNotLinked``, ``InvalidSenderUserName``)
and their texts are the ones reported by users of the real service; the spec documents only the shape
(``{"error": {"code", "message", ...}}``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema

from .server import Request, Response
from .traffic import Traffic

SCHEMA_FILE = Path(__file__).parent / "data" / "acs-email-send-request.schema.json"
#: Versions azure-communication-email 1.1.0 knows (``_api_versions.py``); 2025-09-01 is its default.
API_VERSIONS = ("2023-03-31", "2024-07-01-preview", "2025-09-01")
#: The audience of the tokens the SDK asks for (scope ``https://communication.azure.com//.default``).
AUDIENCE = "https://communication.azure.com"
#: A fixed key, so that tests can list it among the secrets nothing may log. Base64, as Azure's are.
DEFAULT_ACCESS_KEY = base64.b64encode(b"acs-standin-access-key-0123456789").decode()
MAX_CLOCK_SKEW = timedelta(minutes=15)
_ADDRESS = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")

_ERRORS = {
    400: ("BadRequest", "The request is invalid."),
    401: ("Denied", "Denied by the resource provider."),
    403: ("Forbidden", "The caller is not allowed to send email from this resource."),
    404: ("NotFound", "The requested resource was not found."),
    409: ("Conflict", "An operation with the same id already exists."),
    413: ("RequestEntityTooLarge", "The request is larger than 10 MB."),
    429: ("TooManyRequests", "Too many requests. Try again later."),
    500: ("InternalServerError", "An internal error occurred."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _error(status: int, code: str | None = None, message: str | None = None, **extra: Any) -> Response:
    default_code, default_message = _ERRORS.get(status, (f"Http{status}", f"HTTP {status}"))
    code = code or default_code
    return Response(status, error_body(code, message or default_message, **extra), {"x-ms-error-code": code})


@dataclass
class AcsOperation:
    """One accepted send: the body as parsed, and how its status has gone so far."""

    id: str
    message: dict[str, Any]
    api_version: str
    status: str = "Running"
    error: dict[str, str] | None = None
    polls: int = 0  # status reads so far
    recipients: tuple[str, ...] = field(default=())

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.error:
            body["error"] = dict(self.error)
        return body


class AcsStandIn:
    """Fake ``<resource>.communication.azure.com``. ``outbox`` holds every accepted mail, oldest first."""

    def __init__(
        self,
        resource: str = "acs-standin",
        access_key: str = DEFAULT_ACCESS_KEY,
        traffic: Traffic | None = None,
        aad: Any = None,
        outbox_dir: str | Path | None = None,
    ):
        self.host = f"{resource}.communication.azure.com"
        self.access_key = access_key
        self.traffic = traffic if traffic is not None else Traffic()
        self._issuers: list[Any] = []
        if aad is not None:
            self.accept_tokens_from(aad)
        #: Bearer tokens accepted as they are (a test's static TokenCredential hands out one of them).
        self.bearer_token = "acs-standin-token-" + secrets.token_urlsafe(12)
        self.tokens = {self.bearer_token}
        self.outbox_dir = Path(outbox_dir) if outbox_dir is not None else None
        self.outbox: list[dict[str, Any]] = []
        self.operations: dict[str, AcsOperation] = {}
        schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
        checker = jsonschema.FormatChecker()
        checker.checks("email")(lambda value: not isinstance(value, str) or bool(_ADDRESS.fullmatch(value)))
        self._validator = jsonschema.Draft7Validator(schema, format_checker=checker)
        self._lock = threading.Lock()
        self._defaults()

    def _defaults(self) -> None:
        #: Status reads answered ``Running`` before the terminal status.
        self.running_polls = 1
        #: Seconds for the ``retry-after`` header of a ``Running`` answer (and of the 202); None: no header.
        self.status_retry_after: int | None = None
        #: Domains linked to the resource (lower case); None: any sender domain is linked.
        self.linked_domains: set[str] | None = None
        #: Sender usernames (the part before ``@``) set up on the domain; None: any.
        self.sender_usernames: set[str] | None = None
        self._failing: dict[str, dict[str, str]] = {}

    # ---------------------------------------------------------------- test API
    @property
    def endpoint(self) -> str:
        return f"https://{self.host}/"

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.endpoint};accesskey={self.access_key}"

    def accept_tokens_from(self, issuer: Any) -> None:
        """Trust the bearer tokens ``issuer`` issued for ACS (``aud`` https://communication.azure.com):
        anything with ``issued(token) -> bool`` (the managed-identity stand-in) or ``check_bearer(request)
        -> None`` when valid (the Azure AD stand-in)."""
        self._issuers.append(issuer)

    def fail_recipient(
        self,
        address: str,
        code: str = "EmailDropped",
        message: str = "Email was dropped after several attempts to deliver.",
    ) -> None:
        """Mails to ``address`` are accepted (202), and their operation ends ``Failed`` with this error."""
        with self._lock:
            self._failing[address.lower()] = {"code": code, "message": message}

    def mails_to(self, address: str) -> list[dict[str, Any]]:
        """Accepted mails with ``address`` among the ``to`` recipients (case-insensitive)."""
        address = address.lower()
        return [
            m
            for m in list(self.outbox)
            if any(t.get("address", "").lower() == address for t in m.get("recipients", {}).get("to", []))
        ]

    def operations_to(self, address: str) -> list[AcsOperation]:
        """The send operations of the mails to ``address``, oldest first."""
        with self._lock:
            return [op for op in self.operations.values() if address.lower() in op.recipients]

    def validate(self, body: Any) -> list[dict[str, str]]:
        """The violations of a parsed body, as error details (empty when the schema accepts it)."""
        errors = sorted(self._validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        leaves = [leaf for error in errors for leaf in _leaves(error)]
        return [{"code": "InvalidRequest", "message": e.message, "target": _target(e)} for e in leaves]

    def reset(self) -> None:
        """Empty the outbox and forget operations, failures and settings; key and tokens stay."""
        with self._lock:
            self.outbox.clear()
            self.operations.clear()
            self._defaults()

    # ---------------------------------------------------------------- server interface
    def service_for_host(self, host: str) -> str | None:
        return "acs" if host == self.host else None

    def fault_response(self, service: str, status: int) -> Response:
        return _error(status)

    def handle(self, req: Request) -> Response:
        denied = self._check_auth(req)
        if denied is not None:
            return denied
        version = req.query.get("api-version")
        if version not in API_VERSIONS:
            return _error(
                400,
                "UnsupportedApiVersion",
                f"The api-version '{version}' is not supported. Supported versions: {', '.join(API_VERSIONS)}.",
            )
        path = req.path.rstrip("/")
        if path == "/emails:send":
            return self._send(req, version) if req.method == "POST" else _error(405, "MethodNotAllowed")
        match = re.fullmatch(r"/emails/operations/([^/]+)", path)
        if match:
            return self._status(match.group(1)) if req.method == "GET" else _error(405, "MethodNotAllowed")
        return _error(404)

    # ---------------------------------------------------------------- auth
    def _check_auth(self, req: Request) -> Response | None:
        scheme, _, credentials = (req.header("Authorization") or "").partition(" ")
        if scheme == "HMAC-SHA256":
            return None if self._hmac_ok(req, credentials) else _error(401)
        if scheme.lower() == "bearer":
            return None if self._token_ok(req, credentials) else _error(401)
        return _error(401)

    def _hmac_ok(self, req: Request, credentials: str) -> bool:
        fields = dict(part.partition("=")[::2] for part in credentials.split("&"))
        signed, signature = fields.get("SignedHeaders", ""), fields.get("Signature", "")
        if signed.lower().split(";") != ["x-ms-date", "host", "x-ms-content-sha256"] or not signature:
            return False
        date, content_hash = req.header("x-ms-date") or "", req.header("x-ms-content-sha256") or ""
        try:
            sent_at = parsedate_to_datetime(date)
        except (TypeError, ValueError, IndexError):
            return False
        if sent_at.tzinfo is None or abs(datetime.now(UTC) - sent_at) > MAX_CLOCK_SKEW:
            return False
        body_hash = base64.b64encode(hashlib.sha256(req.body).digest()).decode()
        if not hmac.compare_digest(content_hash, body_hash):
            return False
        target = req.path + ("?" + urlencode(req.query) if req.query else "")
        to_sign = f"{req.method}\n{target}\n{date};{req.host};{content_hash}"
        expected = base64.b64encode(
            hmac.new(base64.b64decode(self.access_key), to_sign.encode(), hashlib.sha256).digest()
        ).decode()
        return hmac.compare_digest(signature, expected)

    def _token_ok(self, req: Request, token: str) -> bool:
        if token in self.tokens:
            return True
        if not any(_issued(issuer, token, req) for issuer in self._issuers):
            return False
        try:  # issued by a trusted stand-in (it knows its tokens): is it meant for ACS?
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return False
        return str(claims.get("aud", "")).rstrip("/") == AUDIENCE

    # ---------------------------------------------------------------- operations
    def _send(self, req: Request, version: str) -> Response:
        try:
            body = json.loads(req.body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "BadRequest", "The request body is not valid JSON.")
        details = self.validate(body)
        if details:
            return _error(
                400, "BadRequest", details[0]["message"], target=details[0]["target"], details=details
            )
        sender = body["senderAddress"]
        username, _, domain = sender.rpartition("@")
        if self.linked_domains is not None and domain.lower() not in self.linked_domains:
            return _error(404, "DomainNotLinked", "The specified sender domain has not been linked.")
        if self.sender_usernames is not None and username.lower() not in self.sender_usernames:
            return _error(400, "InvalidSenderUserName", "Invalid email sender username.")
        recipients = tuple(
            a["address"].lower() for kind in ("to", "cc", "bcc") for a in body["recipients"].get(kind, [])
        )
        operation_id = req.header("Operation-Id") or str(uuid.uuid4())
        with self._lock:
            if operation_id in self.operations:
                return _error(409)
            self.outbox.append(body)
            self.operations[operation_id] = AcsOperation(operation_id, body, version, recipients=recipients)
            n = len(self.outbox)
        if self.outbox_dir is not None:
            self._write(n, req.body, body)
        location = f"https://{self.host}/emails/operations/{operation_id}?api-version={version}"
        headers = {"Operation-Location": location, "operation-id": operation_id}
        if self.status_retry_after is not None:
            headers["retry-after"] = str(self.status_retry_after)
        return Response(202, {"id": operation_id, "status": "Running"}, headers)

    def _status(self, operation_id: str) -> Response:
        with self._lock:
            op = self.operations.get(operation_id)
            if op is None:
                return _error(404, "NotFound", f"The operation '{operation_id}' was not found.")
            op.polls += 1
            if op.status == "Running" and op.polls > self.running_polls:
                failure = next((self._failing[r] for r in op.recipients if r in self._failing), None)
                op.status, op.error = ("Failed", failure) if failure else ("Succeeded", None)
            body = op.body()
        headers = {}
        if body["status"] == "Running" and self.status_retry_after is not None:
            headers["retry-after"] = str(self.status_retry_after)
        return Response(200, body, headers)

    def _write(self, n: int, raw: bytes, mail: dict[str, Any]) -> None:
        assert self.outbox_dir is not None
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        to = next(iter(mail["recipients"]["to"]), {}).get("address", "")
        stem = f"{stamp}-{n:04d}-{re.sub(r'[^A-Za-z0-9@._+-]', '_', to)[:80] or 'unknown'}"
        (self.outbox_dir / f"{stem}.json").write_bytes(raw)
        content = mail["content"]
        page = content.get("html")
        if page is None:
            page = (
                f'<!doctype html><meta charset="utf-8"><title>{html.escape(content.get("subject", ""))}'
                f"</title><pre>{html.escape(content.get('plainText', ''))}</pre>"
            )
        (self.outbox_dir / f"{stem}.html").write_text(page, encoding="utf-8")


def _issued(issuer: Any, token: str, req: Request) -> bool:
    if hasattr(issuer, "issued"):
        return bool(issuer.issued(token))
    return issuer.check_bearer(req) is None


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The innermost errors of an error (``allOf``/``anyOf`` wrap the ones that say what is wrong)."""
    if error.validator in ("allOf", "anyOf") and error.context:
        return [leaf for sub in error.context for leaf in _leaves(sub)]
    return [error]


def _target(error: jsonschema.ValidationError) -> str:
    """The offending field, ``recipients.to[0].address`` style."""
    target = ""
    for part in error.absolute_path:
        target += f"[{part}]" if isinstance(part, int) else f".{part}" if target else str(part)
    if error.validator == "required":
        missing = re.match(r"'(.+)' is a required property", error.message)
        if missing:
            target += f".{missing.group(1)}" if target else missing.group(1)
    return target or "body"
