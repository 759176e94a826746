"""Mail through SendGrid's v3 Mail Send API (the `sendgrid` package)."""

from __future__ import annotations

import base64
import json
import logging
from urllib.error import URLError

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Attachment,
    ClickTracking,
    Content,
    Disposition,
    Email,
    FileContent,
    FileName,
    FileType,
    Mail,
    To,
    TrackingSettings,
)

from .domain import OutgoingMail
from .errors import CredentialsError, ServiceError, TransientServiceError
from .retry import retry_after_seconds

SERVICE = "SendGrid"
TIMEOUT = 15.0  # seconds per call; the sendgrid client has none by default

# At DEBUG, python_http_client logs request headers (the API key) and bodies (the cancel links).
logging.getLogger("python_http_client").setLevel(logging.INFO)


class SendGridMailer:
    def __init__(self, api_key: str, from_email: str, from_name: str | None = None, timeout: float = TIMEOUT):
        self._client = SendGridAPIClient(api_key)
        self._sender = Email(from_email, from_name)
        self._timeout = timeout

    def send(self, mail: OutgoingMail) -> None:
        message = Mail(from_email=self._sender, to_emails=To(mail.to), subject=mail.subject)
        message.add_content(Content("text/plain", mail.text))
        message.add_content(Content("text/html", mail.html))
        for attached in mail.attachments:
            message.add_attachment(
                Attachment(
                    FileContent(base64.b64encode(attached.content).decode("ascii")),
                    FileName(attached.filename),
                    FileType(attached.content_type),
                    Disposition("attachment"),
                )
            )
        # Click tracking would route each signed link through SendGrid's redirector (and its scanners).
        message.tracking_settings = TrackingSettings(click_tracking=ClickTracking(False, False))
        try:
            self._client.client.mail.send.post(request_body=message.get(), timeout=self._timeout)
        except HTTPError as error:
            raise _translate(error) from None
        except (URLError, TimeoutError, ConnectionError) as error:
            raise TransientServiceError(SERVICE, f"no answer ({_reason(error)})") from None


def _translate(error: HTTPError) -> ServiceError:
    status, messages = error.status_code, _messages(error)
    if status == 403 and "from address" in messages.lower():
        # Like a rejected key, an unverified sender fails every mail: the run stops at the first.
        return CredentialsError(SERVICE, f"refused the sender ({messages})", ("from_email",))
    if status in (401, 403):
        return CredentialsError(
            SERVICE, f"rejected the API key (HTTP {status}: {messages})", ("SENDGRID_API_KEY",)
        )
    if status == 429 or status >= 500:
        return TransientServiceError(SERVICE, f"HTTP {status}: {messages}", _retry_after(error))
    return ServiceError(SERVICE, f"refused the mail (HTTP {status}): {messages}")


def _messages(error: HTTPError) -> str:
    """SendGrid's own error texts, e.g. `The to email does not contain a valid address. (field: ...)`."""
    try:
        errors = json.loads(error.body or b"{}").get("errors") or []
        texts = [
            f"{e.get('message')}" + (f" (field: {e['field']})" if e.get("field") else "") for e in errors
        ]
        return "; ".join(texts)[:500] or str(error.reason)
    except (ValueError, AttributeError, TypeError):
        return str(error.reason)


def _retry_after(error: HTTPError) -> float | None:
    headers = error.headers or {}
    return retry_after_seconds(headers.get("Retry-After") if hasattr(headers, "get") else None)


def _reason(error: Exception) -> str:
    return str(getattr(error, "reason", None) or error or type(error).__name__)
