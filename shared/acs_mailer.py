"""Mail through Azure Communication Services Email (the `azure-communication-email` SDK).

Chosen instead of SendGrid when `acs_endpoint` is set (signing in as the app's identity: the managed
identity in Azure) or `acs_connection_string` (the resource's access key, for local runs). It sends the
same rendered mail, and its errors mean what sendgrid_mailer.py's mean, so no use case can tell the two
apart:

- 401/403, or no token for the identity -> CredentialsError naming `acs_endpoint` and the identity's role
  (or `acs_connection_string`): every mail would fail the same way, so the run stops at the first;
- a sender the resource may not use (`DomainNotLinked`, `InvalidSenderUserName`) -> CredentialsError
  naming `from_email`, for the same reason (SendGrid's 403 for an unverified sender);
- 429, 5xx, no answer -> TransientServiceError with the service's Retry-After (seconds or a date), for
  shared.retry.RetryPolicy to retry the send;
- any other refusal (400: an invalid address, ...) -> ServiceError with the service's own code and text.

ACS queues a mail (202 + Operation-Location) and says later whether it went out, so `send` reads the
operation's status until Succeeded or Failed: the next read after what the service asks (its
`retry-after`) or else `poll_interval`, and for at most `max_wait` in all. Failed -> ServiceError naming
the recipient and the service's reason. A mail the service has accepted is never sent again by this
adapter: a status read that fails (429, 5xx, no answer) is simply read again at the next poll, and a mail
still Running at `max_wait` (or when the service asks to wait past it) counts as sent, with a warning
naming the operation — ACS has it, just as SendGrid has a mail it answered 202 to.

The SDK's own retries are off (`retry_total=0`): RetryPolicy is the only retry layer. Neither sendgrid nor
any other mail or compute SDK is imported here.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from typing import Any

from azure.communication.email import EmailClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.polling.base_polling import LROBasePolling, _raise_if_bad_http_status_and_method

from .domain import OutgoingMail
from .errors import ConfigurationError, CredentialsError, ServiceError, TransientServiceError
from .retry import retry_after_seconds

SERVICE = "ACS Email"
TIMEOUT = 15.0  # seconds to connect, and to read each answer (azure-core's default is 300)
MAX_WAIT = 30.0  # seconds from the send to the operation's final status, at most
POLL_INTERVAL = 1.0  # seconds between status reads when the service gives no retry-after
IDENTITY_SETTINGS = (
    "acs_endpoint",
    "the Function App's managed identity and its role on the Communication Services resource",
)
KEY_SETTINGS = ("acs_connection_string",)
# The service's codes for a sender the resource may not use: its domain is not connected to the
# resource, or the username before the @ is not set up on that domain.
SENDER_CODES = frozenset({"DomainNotLinked", "InvalidSenderUserName"})

log = logging.getLogger(__name__)


class AcsMailer:
    """The Mailer port on ACS Email. `sender_name` is kept for symmetry with SendGridMailer only: the send
    API has no field for it; ACS shows the display name set up for the sender username on the domain."""

    def __init__(
        self,
        endpoint: str,
        credential: TokenCredential,
        sender_address: str,
        sender_name: str | None = None,
        timeout: float = TIMEOUT,
        *,
        max_wait: float = MAX_WAIT,
        poll_interval: float = POLL_INTERVAL,
        credential_settings: tuple[str, ...] = IDENTITY_SETTINGS,
    ):
        client = EmailClient(endpoint, credential, **_client_options(timeout))
        self._setup(
            client, sender_address, sender_name, timeout, max_wait, poll_interval, credential_settings
        )

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        sender_address: str,
        sender_name: str | None = None,
        timeout: float = TIMEOUT,
        *,
        max_wait: float = MAX_WAIT,
        poll_interval: float = POLL_INTERVAL,
    ) -> AcsMailer:
        """Signing each request with the resource's access key (HMAC-SHA256), as for local runs."""
        _check_connection_string(connection_string)
        client = EmailClient.from_connection_string(connection_string, **_client_options(timeout))
        mailer = cls.__new__(cls)
        mailer._setup(client, sender_address, sender_name, timeout, max_wait, poll_interval, KEY_SETTINGS)
        return mailer

    def _setup(
        self,
        client: EmailClient,
        sender_address: str,
        sender_name: str | None,
        timeout: float,
        max_wait: float,
        poll_interval: float,
        credential_settings: tuple[str, ...],
    ) -> None:
        self._client = client
        self.sender_address, self.sender_name = sender_address, sender_name
        self._timeout, self._max_wait, self._poll_interval = timeout, max_wait, poll_interval
        self._credential_settings = credential_settings

    def message(self, mail: OutgoingMail) -> dict[str, Any]:
        """The body of `POST /emails:send` for one mail."""
        message = {
            "senderAddress": self.sender_address,
            "recipients": {"to": [{"address": mail.to}]},
            "content": {"subject": mail.subject, "plainText": mail.text, "html": mail.html},
            # Engagement tracking would rewrite each signed link through ACS's redirector (and its scanners).
            "userEngagementTrackingDisabled": True,
        }
        if mail.attachments:
            message["attachments"] = [
                {"name": a.filename, "contentType": a.content_type,
                 "contentInBase64": base64.b64encode(a.content).decode("ascii")}
                for a in mail.attachments
            ]  # fmt: skip
        return message

    def send(self, mail: OutgoingMail) -> None:
        polling = _BoundedPolling(self._poll_interval, time.monotonic() + self._max_wait)
        try:
            poller = self._client.begin_send(self.message(mail), polling=polling)
            poller.result(timeout=self._max_wait + 2 * self._timeout)  # the polling ends itself before
            if not poller.done():
                raise _Unconfirmed("?", "no final status in time")
        except _Unconfirmed as late:
            log.warning(
                "%s accepted the mail to %s (operation %s) but had not sent it within %.0f s (%s); "
                "counted as sent",
                SERVICE,
                mail.to,
                late.operation_id,
                self._max_wait,
                late.reason,
            )
            return
        except HttpResponseError as error:
            raise self._translate(error, mail, polling.failed_operation()) from None
        except (ServiceRequestError, ServiceResponseError) as error:
            raise TransientServiceError(SERVICE, f"no answer ({_reason(error)})") from None
        except AzureError as error:
            raise ServiceError(
                SERVICE, f"unexpected answer to the mail to {mail.to}: {_reason(error)}"
            ) from None

    def _translate(
        self, error: HttpResponseError, mail: OutgoingMail, failed: dict[str, Any] | None
    ) -> ServiceError:
        if failed is not None:  # the operation ended Failed (or Canceled): the service's own reason
            reason = failed.get("error") or {}
            said = _said(reason.get("code"), reason.get("message") or "no reason given")
            return ServiceError(
                SERVICE, f"could not send the mail to {mail.to} ({failed.get('status')}: {said})"
            )
        status = error.status_code
        code, text = _details(error)
        said = _said(code, text)
        if code in SENDER_CODES:
            # Like a rejected key, a sender the resource may not use fails every mail: stop at the first.
            return CredentialsError(
                SERVICE,
                f"refused the sender {self.sender_address} (HTTP {status}: {said}); its domain and username "
                "must be set up and connected to the Communication Services resource",
                ("from_email",),
            )
        if status == 429 or (status or 0) >= 500:
            return TransientServiceError(SERVICE, f"HTTP {status}: {said}", _retry_after(error))
        if status in (401, 403) or isinstance(error, ClientAuthenticationError):
            if status is None:  # azure-identity could not get a token: no request reached ACS
                what = f"no token for the app's identity ({_reason(error)[:300]})"
            elif self._credential_settings == KEY_SETTINGS:
                what = f"rejected the access key (HTTP {status}: {said})"
            else:
                what = f"refused the app's identity (HTTP {status}: {said})"
            return CredentialsError(SERVICE, what, self._credential_settings)
        return ServiceError(SERVICE, f"refused the mail to {mail.to} (HTTP {status}): {said}")


class _Unconfirmed(Exception):
    """The operation was still running when the wait ran out (or the service asked to wait past it)."""

    def __init__(self, operation_id: str, reason: str):
        self.operation_id, self.reason = operation_id, reason
        super().__init__(f"operation {operation_id}: {reason}")


class _BoundedPolling(LROBasePolling):
    """The SDK's own status poller (LROBasePolling, final state via azure-async-operation, exactly as
    begin_send builds it) with a deadline, and without failing on a status read that fails: the mail is
    accepted by then, and a retry of the send would send it twice."""

    def __init__(self, interval: float, deadline: float):
        super().__init__(interval, lro_options={"final-state-via": "azure-async-operation"})
        self._deadline = deadline
        self._unread: str | None = None  # why the latest status read failed, if it did

    def _delay(self) -> None:
        wait = self._extract_delay()  # the service's retry-after (a minimum), else the interval
        if time.monotonic() + wait > self._deadline:
            why = f"last read: {self._unread}" if self._unread else f"status {self.status()}"
            raise _Unconfirmed(self._operation_id(), why)
        self._sleep(wait)

    def update_status(self) -> None:
        try:
            response = self.request_status(self._operation.get_polling_url())
        except (ServiceRequestError, ServiceResponseError) as error:
            self._unread = f"no answer ({_reason(error)})"
            return
        self._pipeline_response = response  # its retry-after paces the next read
        code = response.http_response.status_code
        if code == 429 or code >= 500:
            self._unread = f"HTTP {code}"
            return
        self._unread = None
        _raise_if_bad_http_status_and_method(response.http_response)
        self._status = self._operation.get_status(response)

    def failed_operation(self) -> dict[str, Any] | None:
        """The final status body if the service said the operation ended Failed or Canceled, else None
        (LROBasePolling also marks itself Failed when a status read is refused, e.g. with a 401)."""
        response = getattr(self, "_pipeline_response", None)
        if response is None or response.http_response.status_code != 200:
            return None
        try:
            body = json.loads(response.http_response.text())
        except ValueError:
            return None
        return body if isinstance(body, dict) and body.get("status") in ("Failed", "Canceled") else None

    def _operation_id(self) -> str:
        response = self._initial_response.http_response
        found = response.headers.get("operation-id") or re.search(
            r"/operations/([^/?]+)", self._operation.get_polling_url()
        )
        return found if isinstance(found, str) else found.group(1) if found else "?"


def _client_options(timeout: float) -> dict[str, Any]:
    return {"retry_total": 0, "connection_timeout": timeout, "read_timeout": timeout}


def _check_connection_string(value: str) -> None:
    """Fail at build time, naming the setting, rather than at the first signature (the SDK decodes the
    key only then). Never echoes the value: it holds the key."""
    pairs = {k.strip().lower(): v for k, _, v in (part.partition("=") for part in value.split(";"))}
    try:
        key_ok = bool(pairs.get("accesskey")) and bool(base64.b64decode(pairs["accesskey"], validate=True))
    except (binascii.Error, ValueError):
        key_ok = False
    if not (pairs.get("endpoint") and key_ok):
        raise ConfigurationError(
            [
                "acs_connection_string is not a Communication Services connection string "
                "(endpoint=https://...;accesskey=<base64 key>)"
            ]
        )


def _details(error: HttpResponseError) -> tuple[str | None, str]:
    """The service's error code and text (`{"error": {"code", "message"}}`), else the HTTP reason."""
    parsed = getattr(error, "error", None)
    if parsed is not None and (parsed.code or parsed.message):
        return parsed.code, str(parsed.message or "")[:500]
    return None, str(error.reason or error.message or type(error).__name__)[:500]


def _said(code: str | None, text: str) -> str:
    return f"{code}: {text}" if code else text


def _retry_after(error: HttpResponseError) -> float | None:
    headers = getattr(error.response, "headers", None) or {}
    return retry_after_seconds(headers.get("Retry-After"))


def _reason(error: BaseException) -> str:
    return str(getattr(error, "message", None) or error or type(error).__name__)
