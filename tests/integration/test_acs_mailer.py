"""AcsMailer, the Mailer port on Azure Communication Services Email, driven through the REAL SDK
(azure-communication-email 1.1.0 on azure-core) against the ACS stand-in, over TLS and the CONNECT proxy.

They pin what the SDK sends (api-version, HMAC-SHA256 or bearer, the body) and the adapter's promises:
the same failure semantics as SendGridMailer (credentials and an unusable sender stop the run, throttling
and 5xx are transient with Retry-After, a refused or failed mail is an error for that recipient only),
the operation polled to its final status within a bounded wait, and a mail the service accepted never
sent twice by the adapter.
"""

import base64
import logging
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests
from azure.communication.email import EmailClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential

from shared.acs_mailer import IDENTITY_SETTINGS, AcsMailer
from shared.domain import Attachment, OutgoingMail
from shared.errors import CredentialsError, ServiceError, TransientServiceError
from shared.retry import RetryPolicy

SENDER = "noreply@contoso.com"
SEND = r"/emails:send$"
STATUS = r"^/emails/operations/"
FAST = {"poll_interval": 0.02}


class StaticToken:
    """A TokenCredential handing out one fixed token, recording the scopes it is asked for."""

    def __init__(self, token):
        self.token, self.scopes = token, []

    def get_token(self, *scopes, **kwargs):
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def a_mail(to="alice@contoso.com"):
    return OutgoingMail(
        to=to,
        subject="ci-alice stops at 20:00",
        text="Keep it: https://autoshutdown.example.net/api/CancelShutDown?token=abc",
        html='<p><a href="https://autoshutdown.example.net/api/CancelShutDown?token=abc">Keep it</a></p>',
        instances=("ci-alice",),
    )


def keyed(standins, **options):
    return AcsMailer.from_connection_string(standins.acs.connection_string, SENDER, **{**FAST, **options})


def with_identity(standins, credential=None, **options):
    credential = credential or StaticToken(standins.acs.bearer_token)
    return AcsMailer(standins.acs.endpoint, credential, SENDER, **{**FAST, **options})


# --------------------------------------------------------------------------- what goes over the wire
def test_a_mail_with_the_connection_string_is_signed_accepted_and_polled_to_succeeded(standins):
    keyed(standins).send(a_mail())

    [post] = standins.records("acs", "POST", SEND)  # one try: the SDK's own retries are off
    assert post.host == "acs-standin.communication.azure.com"
    assert post.query == {"api-version": "2025-09-01"}  # the SDK 1.1.0 default
    scheme, _, signed = post.header("Authorization").partition(" ")
    assert scheme == "HMAC-SHA256"
    assert signed.startswith("SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=")
    assert post.header("x-ms-content-sha256") and post.header("x-ms-date")
    assert post.status == 202
    operation = post.response_headers["operation-id"]
    assert post.response_headers["Operation-Location"] == (
        f"https://acs-standin.communication.azure.com/emails/operations/{operation}?api-version=2025-09-01"
    )
    polls = standins.records("acs", "GET", STATUS)
    assert [p.path for p in polls] == [f"/emails/operations/{operation}"] * 2  # Running, then Succeeded
    assert all(p.header("Authorization").startswith("HMAC-SHA256 ") for p in polls)  # polls are signed too
    assert [op.status for op in standins.acs.operations_to("alice@contoso.com")] == ["Succeeded"]


def test_the_body_is_the_rendered_mail_with_tracking_off_and_valid_against_the_spec(standins):
    mail = a_mail()
    keyed(standins).send(mail)

    [sent] = standins.acs.mails_to("alice@contoso.com")
    assert sent == {
        "senderAddress": SENDER,
        "recipients": {"to": [{"address": "alice@contoso.com"}]},
        "content": {"subject": mail.subject, "plainText": mail.text, "html": mail.html},
        "userEngagementTrackingDisabled": True,  # no redirector in front of the signed links
    }
    assert standins.acs.validate(sent) == []


def test_the_schema_lists_every_violation(standins):
    body = {"senderAddress": "nobody", "recipients": {"to": []}, "content": {"html": "<p>x</p>"}}
    targets = {d["target"] for d in standins.acs.validate(body)}
    assert targets == {"senderAddress", "recipients.to", "content.subject"}


def test_a_mail_with_a_token_credential_carries_a_bearer_token_for_communication_services(standins):
    credential = StaticToken(standins.acs.bearer_token)
    with_identity(standins, credential).send(a_mail())

    assert credential.scopes == [("https://communication.azure.com//.default",)]  # the SDK's scope, as is
    [post] = standins.records("acs", "POST", SEND)
    assert post.header("Authorization") == f"Bearer {standins.acs.bearer_token}"
    assert standins.acs.operations_to("alice@contoso.com")[0].status == "Succeeded"


def test_a_service_principal_signs_in_at_the_azure_ad_standin_and_mails(standins):
    a = standins.azureml
    credential = ClientSecretCredential(a.tenant_id, a.client_id, a.client_secret)
    with_identity(standins, credential).send(a_mail())

    assert standins.count("aad", "POST", status=200) == 1
    assert standins.acs.mails_to("alice@contoso.com")


# --------------------------------------------------------------------------- credentials and sender
def test_a_wrong_access_key_names_acs_connection_string(standins):
    wrong_key = base64.b64encode(b"not the resource's key").decode()
    conn = f"endpoint={standins.acs.endpoint};accesskey={wrong_key}"
    mailer = AcsMailer.from_connection_string(conn, SENDER, **FAST)
    with pytest.raises(CredentialsError, match=r"HTTP 401: Denied") as caught:
        mailer.send(a_mail())
    assert caught.value.settings == ("acs_connection_string",)
    assert wrong_key not in str(caught.value)
    assert standins.acs.outbox == []


def test_401_for_the_identity_names_acs_endpoint_and_the_managed_identity(standins):
    with pytest.raises(CredentialsError, match="refused the app's identity") as caught:
        with_identity(standins, StaticToken("a-token-acs-never-issued")).send(a_mail())
    assert caught.value.settings == IDENTITY_SETTINGS
    assert "acs_endpoint" in str(caught.value) and "managed identity" in str(caught.value)


def test_403_is_a_credentials_error_too(standins):
    standins.add_fault("acs", "POST", SEND, status=403)
    with pytest.raises(CredentialsError, match=r"HTTP 403"):
        with_identity(standins).send(a_mail())


def test_no_token_for_the_identity_names_acs_endpoint_without_calling_acs(standins):
    a = standins.azureml
    credential = ClientSecretCredential(a.tenant_id, a.client_id, "not-the-secret")
    with pytest.raises(CredentialsError, match="no token for the app's identity") as caught:
        with_identity(standins, credential).send(a_mail())
    assert caught.value.settings == IDENTITY_SETTINGS
    assert standins.count("acs") == 0


def test_a_malformed_connection_string_fails_at_build_time_without_echoing_it():
    from shared.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="acs_connection_string") as caught:
        AcsMailer.from_connection_string("endpoint=https://x.communication.azure.com/;accesskey=@@@", SENDER)
    assert "@@@" not in str(caught.value)


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ({"linked_domains": {"fabrikam.com"}}, "DomainNotLinked"),
        ({"sender_usernames": {"donotreply"}}, "InvalidSenderUserName"),
    ],
)
def test_a_sender_the_resource_may_not_use_names_from_email(standins, setup, code):
    for name, value in setup.items():
        setattr(standins.acs, name, value)
    with pytest.raises(CredentialsError, match=code) as caught:
        keyed(standins).send(a_mail())
    assert caught.value.settings == ("from_email",)  # so the run stops at the first mail


# --------------------------------------------------------------------------- throttling and outages
def test_429_with_retry_after_in_seconds_is_transient(standins):
    standins.add_fault("acs", "POST", SEND, status=429, headers={"Retry-After": "7"})
    with pytest.raises(TransientServiceError, match="HTTP 429: TooManyRequests") as caught:
        keyed(standins).send(a_mail())
    assert caught.value.retry_after == 7.0
    assert standins.count("acs", "POST") == 1  # the SDK did not retry on its own


def test_429_with_retry_after_as_an_http_date_is_transient(standins):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=9), usegmt=True)
    standins.add_fault("acs", "POST", SEND, status=429, headers={"Retry-After": when})
    with pytest.raises(TransientServiceError) as caught:
        with_identity(standins).send(a_mail())
    assert 6.0 < caught.value.retry_after <= 9.0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_transient(standins, status):
    standins.add_fault("acs", "POST", SEND, status=status)
    with pytest.raises(TransientServiceError, match=f"HTTP {status}") as caught:
        keyed(standins).send(a_mail())
    assert caught.value.retry_after is None


def test_a_dropped_connection_and_a_timeout_are_transient(standins):
    standins.add_fault("acs", "POST", SEND, drop=True, times=1)
    with pytest.raises(TransientServiceError, match="no answer"):
        keyed(standins).send(a_mail())
    standins.add_fault("acs", "POST", SEND, delay=1.5, times=1)
    with pytest.raises(TransientServiceError, match="no answer"):
        keyed(standins, timeout=0.5).send(a_mail())


def test_throttling_is_retried_by_the_apps_retry_policy(standins):
    standins.add_fault("acs", "POST", SEND, status=429, headers={"Retry-After": "2"}, times=1)
    slept = []
    policy = RetryPolicy(sleep=slept.append, jitter=lambda: 0.5)
    mailer = keyed(standins)
    policy.call(lambda: mailer.send(a_mail()), "mailing alice@contoso.com")
    assert slept and slept[0] >= 2.0
    assert [r.status for r in standins.records("acs", "POST")] == [429, 202]
    assert len(standins.acs.mails_to("alice@contoso.com")) == 1


def test_a_refused_mail_is_an_error_for_that_mail_with_the_services_message(standins):
    with pytest.raises(
        ServiceError, match=r"refused the mail to not-an-address \(HTTP 400\): BadRequest"
    ) as c:
        keyed(standins).send(a_mail(to="not-an-address"))
    assert type(c.value) is ServiceError  # not retried, not a credentials problem


# --------------------------------------------------------------------------- the operation
def test_a_failed_operation_names_the_recipient_and_the_services_reason(standins):
    standins.acs.fail_recipient("bob@contoso.com")
    with pytest.raises(ServiceError) as caught:
        keyed(standins).send(a_mail(to="bob@contoso.com"))
    assert type(caught.value) is ServiceError
    assert str(caught.value) == (
        "ACS Email: could not send the mail to bob@contoso.com "
        "(Failed: EmailDropped: Email was dropped after several attempts to deliver.)"
    )
    assert standins.count("acs", "POST") == 1


def test_one_recipient_failing_does_not_keep_the_other_from_being_mailed(standins):
    standins.acs.fail_recipient("bob@contoso.com", "EmailDropped", "Mailbox unavailable.")
    mailer = keyed(standins)
    outcomes = {}
    for to in ("bob@contoso.com", "carol@contoso.com"):
        try:
            mailer.send(a_mail(to=to))
            outcomes[to] = "sent"
        except ServiceError as error:
            outcomes[to] = str(error)
    assert outcomes["carol@contoso.com"] == "sent"
    assert "bob@contoso.com (Failed: EmailDropped: Mailbox unavailable.)" in outcomes["bob@contoso.com"]
    assert [op.status for op in standins.acs.operations_to("carol@contoso.com")] == ["Succeeded"]


def test_the_services_retry_after_paces_the_polls(standins):
    standins.acs.status_retry_after = 1  # on the 202 and on each Running answer
    keyed(standins).send(a_mail())
    first, second = standins.records("acs", "GET", STATUS)  # the SDK reads once at once: Running
    assert second.start - first.start >= 0.95  # 1 s, not the 0.02 s poll interval
    assert standins.acs.operations_to("alice@contoso.com")[0].status == "Succeeded"


def test_a_status_read_that_fails_is_read_again_and_the_mail_is_not_sent_twice(standins):
    standins.add_fault("acs", "GET", STATUS, status=503, times=1)
    standins.add_fault("acs", "GET", STATUS, status=429, headers={"Retry-After": "0"}, times=1)
    standins.add_fault("acs", "GET", STATUS, drop=True, times=1)
    keyed(standins).send(a_mail())
    assert standins.count("acs", "POST") == 1
    assert [r.status for r in standins.records("acs", "GET")] == [503, 429, None, 200, 200]


def test_a_status_read_refused_for_the_credentials_is_a_credentials_error(standins):
    standins.add_fault("acs", "GET", STATUS, status=401)
    with pytest.raises(CredentialsError, match=r"HTTP 401: Denied") as caught:
        with_identity(standins).send(a_mail())
    assert caught.value.settings == IDENTITY_SETTINGS
    assert standins.count("acs", "POST") == 1


def test_a_mail_still_running_at_the_end_of_the_wait_counts_as_sent_with_a_warning(standins, caplog):
    standins.acs.running_polls = 10_000
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="shared.acs_mailer"):
        keyed(standins, max_wait=0.5).send(a_mail())
    assert time.monotonic() - started < 3.0
    operation = standins.records("acs", "POST")[0].response_headers["operation-id"]
    assert f"accepted the mail to alice@contoso.com (operation {operation})" in caplog.text
    assert "counted as sent" in caplog.text
    assert standins.count("acs", "POST") == 1
    polls = standins.count("acs", "GET")
    time.sleep(0.2)
    assert standins.count("acs", "GET") == polls  # the polling stopped with the wait


def test_a_retry_after_beyond_the_wait_is_not_waited_for(standins, caplog):
    standins.acs.status_retry_after = 100  # as in the spec's example for a running operation
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="shared.acs_mailer"):
        keyed(standins, max_wait=5).send(a_mail())
    assert time.monotonic() - started < 2.0
    assert standins.count("acs", "GET") == 1 and "status Running" in caplog.text


# --------------------------------------------------------------------------- the stand-in itself
def test_the_standin_refuses_unsigned_and_tampered_requests_and_unknown_api_versions(standins):
    url = f"{standins.acs.endpoint}emails:send"
    unsigned = requests.post(url, params={"api-version": "2025-09-01"}, json={}, timeout=10)
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "Denied"
    assert unsigned.headers["x-ms-error-code"] == "Denied"
    forged = requests.post(
        url,
        params={"api-version": "2025-09-01"},
        json={},
        headers={
            "Authorization": "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=aaaa"
        },
        timeout=10,
    )
    assert forged.status_code == 401
    client = EmailClient.from_connection_string(
        standins.acs.connection_string, api_version="2021-10-01-preview", retry_total=0
    )
    with pytest.raises(HttpResponseError, match="UnsupportedApiVersion") as caught:
        client.begin_send(
            AcsMailer.from_connection_string(standins.acs.connection_string, SENDER).message(a_mail())
        )
    assert caught.value.status_code == 400


def test_importing_the_adapter_imports_no_other_mail_or_compute_sdk():
    probe = (
        "import sys, shared.acs_mailer; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sendgrid', 'python_http_client', 'azureml') "
        "or m.startswith('azure.cosmosdb')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_attachment_goes_out_in_base64_as_the_spec_describes(standins):
    report = b"night,workspace,instance,saving\n2026-11-24,ws,ci-alice,3.31\n"
    mail = replace(a_mail(), attachments=(Attachment("report-2026-11.csv", "text/csv", report),))
    keyed(standins).send(mail)
    (sent,) = standins.acs.mails_to("alice@contoso.com")
    (attached,) = sent["attachments"]
    assert (attached["name"], attached["contentType"]) == ("report-2026-11.csv", "text/csv")
    assert base64.b64decode(attached["contentInBase64"]) == report
