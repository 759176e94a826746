"""Stand-in for SendGrid's v3 Mail Send API (host ``api.sendgrid.com``, service ``"sendgrid"``).

``POST /v3/mail/send`` behaves like the real endpoint as far as the app can tell: it checks the
bearer API key (401 with SendGrid's error JSON), validates the body against the official request
schema (``data/mail-send-request.schema.json``, Draft 4 with the ``email`` format checked) and
answers 400 listing *every* violation, or 202 with an ``X-Message-Id`` header. Accepted mails land
in :attr:`SendGridStandIn.outbox` (parsed JSON) and, if ``outbox_dir`` is given, on disk as
``<timestamp>-<n>-<recipient>.json`` (raw body) plus ``.html`` (the HTML part as-is, so a browser
can open it and follow the links; a text-only mail is wrapped escaped in ``<pre>``) for local demos.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema

from .server import Request, Response
from .traffic import Traffic

SCHEMA_FILE = Path(__file__).parent / "data" / "mail-send-request.schema.json"

_UNAUTHORIZED = {
    "errors": [
        {
            "message": "The provided authorization grant is invalid, expired, or revoked",
            "field": None,
            "help": None,
        }
    ]
}
_FAULT_MESSAGES = {
    400: ("Bad Request", None),
    401: (_UNAUTHORIZED["errors"][0]["message"], None),
    403: (
        "The from address does not match a verified Sender Identity. Mail cannot be sent until this error "
        "is resolved. Visit https://sendgrid.com/docs/for-developers/sending-email/sender-identity/ to see "
        "the Sender Identity requirements",
        "from",
    ),
    404: ("Not Found", None),
    413: ("Payload Too Large", None),
    429: ("too many requests", None),
    500: ("internal error", None),
    503: ("Service Unavailable", None),
}


def _field_of(error: jsonschema.ValidationError) -> str | None:
    """Dotted path of the offending field, SendGrid style (``personalizations.0.to.0.email``)."""
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        m = re.match(r"'(.+)' is a required property", error.message)
        if m:
            parts.append(m.group(1))
    return ".".join(parts) or None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", text)[:80] or "unknown"


class SendGridStandIn:
    """Fake ``api.sendgrid.com``. ``outbox`` holds every accepted mail as parsed JSON, oldest first."""

    def __init__(
        self,
        api_key: str = "SG.standin-key",
        outbox_dir: str | Path | None = None,
        traffic: Traffic | None = None,
    ):
        self.api_key = api_key
        self.outbox_dir = Path(outbox_dir) if outbox_dir is not None else None
        self.traffic = traffic if traffic is not None else Traffic()
        self.outbox: list[dict[str, Any]] = []
        self.message_ids: list[str] = []  # parallel to outbox
        schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
        self._validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
        self._lock = threading.Lock()
        self._count = 0

    # ---------------------------------------------------------------- test API
    def mails_to(self, email: str) -> list[dict[str, Any]]:
        """Accepted mails with ``email`` among the ``to`` recipients (case-insensitive)."""
        email = email.lower()
        return [
            m
            for m in list(self.outbox)
            if any(
                t.get("email", "").lower() == email
                for p in m.get("personalizations", [])
                for t in p.get("to", [])
            )
        ]

    @staticmethod
    def content_of(mail: dict[str, Any], mime: str = "text/html") -> str | None:
        """The ``content`` value of the given MIME type, or None."""
        return next((c.get("value") for c in mail.get("content", []) if c.get("type") == mime), None)

    def validate(self, body: Any) -> list[dict[str, Any]]:
        """SendGrid-style error list for a parsed body (empty when the schema accepts it)."""
        errors = sorted(self._validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        return [{"message": e.message, "field": _field_of(e), "help": None} for e in errors]

    def reset(self) -> None:
        """Empty the outbox and restart file numbering (written files stay). The API key is kept."""
        with self._lock:
            self.outbox.clear()
            self.message_ids.clear()
            self._count = 0

    # ---------------------------------------------------------------- server interface
    def service_for_host(self, host: str) -> str | None:
        return "sendgrid" if host == "api.sendgrid.com" else None

    def fault_response(self, service: str, status: int) -> Response:
        message, field = _FAULT_MESSAGES.get(status, (f"HTTP {status}", None))
        return Response(status, {"errors": [{"message": message, "field": field, "help": None}]})

    def handle(self, req: Request) -> Response:
        if req.path.rstrip("/") != "/v3/mail/send":
            return Response(404, {"errors": [{"message": "Not Found", "field": None, "help": None}]})
        if req.method != "POST":
            return Response(405, {"errors": [{"message": "Method Not Allowed", "field": None, "help": None}]})
        scheme, _, key = (req.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(key.encode(), self.api_key.encode()):
            return Response(401, _UNAUTHORIZED)
        try:
            body = json.loads(req.body)
        except (ValueError, UnicodeDecodeError):
            return Response(400, {"errors": [{"message": "Bad Request", "field": None, "help": None}]})
        errors = self.validate(body)
        if errors:
            return Response(400, {"errors": errors})
        message_id = secrets.token_urlsafe(16)[:22]
        with self._lock:
            self._count += 1
            n = self._count
            self.outbox.append(body)
            self.message_ids.append(message_id)
        if self.outbox_dir is not None:
            self._write(n, req.body, body)
        return Response(202, b"", {"X-Message-Id": message_id})

    def _write(self, n: int, raw: bytes, mail: dict[str, Any]) -> None:
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        to = next((t.get("email", "") for p in mail.get("personalizations", []) for t in p.get("to", [])), "")
        stem = f"{stamp}-{n:04d}-{_safe(to)}"
        (self.outbox_dir / f"{stem}.json").write_bytes(raw)
        page = self.content_of(mail, "text/html")
        if page is None:
            text = self.content_of(mail, "text/plain") or ""
            page = (
                f'<!doctype html><meta charset="utf-8"><title>{html.escape(mail.get("subject", ""))}'
                f"</title><pre>{html.escape(text)}</pre>"
            )
        (self.outbox_dir / f"{stem}.html").write_text(page, encoding="utf-8")
