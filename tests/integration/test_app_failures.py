"""Failure paths on the wire: what Azure AD, ARM, SendGrid and Table Storage really answer."""

import base64
import logging

import pytest

from shared.domain import Attachment, OutgoingMail
from shared.errors import CredentialsError, NotFoundError, RunFailedError, ServiceError, TransientServiceError
from shared.sendgrid_mailer import SendGridMailer

STOP = r"/computes/{}/stop$"


def seed(aml, *names: str) -> None:
    for name in names:
        aml.seed(name, "Running", created_by=f"{name}@contoso.com")


def test_wrong_service_principal_secret_names_the_setting_and_stops_nothing(wire):
    seed(wire.standins.azureml, "ci-a", "ci-b")
    wire.configure(service_principal_password="not-the-secret")
    with pytest.raises(CredentialsError, match=r"AADSTS7000215.*service_principal_password"):
        wire.sweep()
    with pytest.raises(CredentialsError, match="service_principal_password"):
        wire.mail()
    assert wire.standins.stopped_names() == [] and wire.mails() == []


def test_unknown_tenant_names_tenant_id(wire):
    wire.configure(tenant_id="00000000-dead-beef-0000-000000000000")
    with pytest.raises(CredentialsError, match="tenant_id"):
        wire.sweep()


def test_unknown_workspace_is_a_clear_not_found(wire):
    seed(wire.standins.azureml, "ci-a")
    wire.configure(aml_workspace="no-such-ws")
    with pytest.raises(NotFoundError, match="aml_workspace"):
        wire.sweep()
    assert wire.standins.stopped_names() == []


def test_unknown_instance_fails_the_run_but_the_others_are_stopped(wire):
    seed(wire.standins.azureml, "ci-a", "ci-b")
    wire.configure(aml_compute_instance="ci-a,ci-ghost,ci-b")
    with pytest.raises(RunFailedError, match="ci-ghost: not found"):
        wire.sweep()
    assert sorted(wire.standins.stopped_names()) == ["ci-a", "ci-b"]


def test_throttled_stop_honours_retry_after_then_succeeds(wire):
    seed(wire.standins.azureml, "ci-a", "ci-b")
    wire.standins.add_fault(
        "arm", "POST", STOP.format("ci-a"), status=429, headers={"Retry-After": "7"}, times=1
    )
    wire.sweep()
    assert sorted(wire.standins.stopped_names()) == ["ci-a", "ci-b"]
    assert wire.standins.count("arm", "POST", STOP.format("ci-a")) == 2
    assert len(wire.slept) == 1 and 6.9 <= wire.slept[0] < 8  # Retry-After 7, plus under a second of jitter


def test_throttled_listing_is_retried(wire):
    seed(wire.standins.azureml, "ci-a")
    wire.standins.add_fault(
        wire.list_service, "GET", r"/computes$", status=429, headers={"Retry-After": "1"}, times=1
    )
    wire.sweep()
    assert wire.standins.stopped_names() == ["ci-a"]


def test_a_persistent_500_for_one_instance_never_keeps_the_others_running(wire, caplog):
    seed(wire.standins.azureml, "ci-a", "ci-b", "ci-c")
    wire.standins.add_fault("arm", "POST", STOP.format("ci-b"), status=500)
    with pytest.raises(RunFailedError, match="ci-b") as failed:
        wire.sweep()
    assert sorted(wire.standins.stopped_names()) == ["ci-a", "ci-c"]
    assert list(failed.value.failures) == ["ci-b"]
    # first try + 3 retries, in all: a re-listing (when the backoff outlasts the listing's freshness)
    # gives no new tries, and no stop goes out on a stale read
    assert wire.standins.count("arm", "POST", STOP.format("ci-b")) == 4
    assert "stopped 2, kept by request 0, busy with a job 0, not running 0, opted out 0" in caplog.text
    assert "failed 1 [ci-b" in caplog.text


def test_sendgrid_rejecting_the_key_names_sendgrid_api_key(wire):
    seed(wire.standins.azureml, "ci-a")
    wire.configure(SENDGRID_API_KEY="SG.wrong")
    with pytest.raises(CredentialsError, match="SENDGRID_API_KEY"):
        wire.mail()
    assert wire.mails() == []
    assert wire.standins.count("sendgrid", status=401) == 1  # a rejected key is not retried


def test_a_sendgrid_schema_violation_surfaces_in_the_error(standins):
    mailer = SendGridMailer(standins.sendgrid.api_key, "noreply@contoso.com")
    with pytest.raises(ServiceError, match=r"refused the mail \(HTTP 400\).*\(field: subject\)"):
        mailer.send(OutgoingMail("ci@contoso.com", "", "text", "<p>html</p>"))
    assert standins.sendgrid.outbox == []


def test_sendgrid_5xx_is_retried(wire):
    seed(wire.standins.azureml, "ci-a", "ci-b")
    wire.configure(notify_instance_owner="true")
    wire.standins.add_fault("sendgrid", "POST", status=503, times=2)
    wire.mail()
    recipients = sorted(m["personalizations"][0]["to"][0]["email"] for m in wire.mails())
    assert recipients == ["ci-a@contoso.com", "ci-b@contoso.com", "ml-team@contoso.com"]
    assert wire.standins.count("sendgrid", status=503) == 2 and len(wire.slept) == 2


def test_one_recipient_failing_never_blocks_the_others_and_the_run_names_who_was_not_told(wire):
    seed(wire.standins.azureml, "ci-a", "ci-b")
    wire.configure(notify_instance_owner="true", max_parallel="1")  # one at a time: a known order
    wire.standins.add_fault("sendgrid", "POST", status=500, skip=1, times=4)  # the 2nd mail, all 4 tries
    with pytest.raises(RunFailedError, match=r"ci-a@contoso.com: not told about ci-a"):
        wire.mail()
    recipients = sorted(m["personalizations"][0]["to"][0]["email"] for m in wire.mails())
    assert recipients == ["ci-b@contoso.com", "ml-team@contoso.com"]


def test_ledger_down_at_sweep_time_stops_nothing_and_fails(wire, caplog):
    seed(wire.standins.azureml, "ci-a", "ci-b")
    wire.told(wire.SWEEP_AT)
    wire.azurite.stop()
    with pytest.raises(TransientServiceError, match="Table Storage"):
        wire.sweep(told=False)
    assert wire.standins.stopped_names() == []
    assert "nothing was stopped" in caplog.text


def test_ledger_down_at_click_time_is_a_retry_page(wire, caplog):
    caplog.set_level(logging.INFO)
    seed(wire.standins.azureml, "ci-a")
    wire.mail()
    link = wire.link("ci-a")
    wire.azurite.stop()
    response = wire.click("POST", link)
    body = response.get_body().decode()
    assert response.status_code == 503 and "try again in a minute" in body and ">Try again</button>" in body
    wire.azurite.start()
    assert wire.click("POST", link).status_code == 200 and len(wire.ledger()) == 1


def test_a_sendgrid_attachment_is_valid_against_its_schema_and_arrives_intact(standins):
    report = b"night,instance,saving\n2026-11-24,ci-alice,3.31\n"
    mail = OutgoingMail("finops@contoso.com", "Report", "text", "<p>html</p>",
                        attachments=(Attachment("report.csv", "text/csv", report),))  # fmt: skip
    SendGridMailer(standins.sendgrid.api_key, "noreply@contoso.com").send(mail)
    (sent,) = standins.sendgrid.outbox
    (attached,) = sent["attachments"]
    assert (attached["filename"], attached["type"], attached["disposition"]) == (
        "report.csv",
        "text/csv",
        "attachment",
    )
    assert base64.b64decode(attached["content"]) == report
