import logging
import re
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.domain import Instance
from shared.errors import CredentialsError, RunFailedError, TransientServiceError
from shared.links import LinkSigner
from shared.notices import MailOptions, send_shutdown_notices
from shared.retry import RetryPolicy
from shared.settings import Settings
from shared.shutdown_calendar import ShutdownCalendar
from tests.fakes import TEST_SECRET, FakeLedger, FakeMailer, FakeWorkspace, environ

MAIL_AT = datetime(2026, 11, 24, 16, tzinfo=UTC)  # 17:00 Berlin, three hours before the shutdown
NO_WAIT = RetryPolicy(attempts=3, sleep=lambda s: None)


def fleet() -> FakeWorkspace:
    return FakeWorkspace(
        Instance("ci-alice", "Running", "alice@contoso.com"),
        Instance("ci-bob", "JobRunning", "bob@contoso.com"),
        Instance("ci-carol", "Stopped", "carol@contoso.com"),
    )


ARM_ID = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws"


def notify(workspace, mailer, ledger=None, at=MAIL_AT, **overrides):
    s = Settings.from_environ(environ(**overrides))
    options = MailOptions(
        s.cancel_url, s.subject, s.to_emails, s.notify_instance_owner, s.dry_run, s.max_parallel
    )
    calendar = ShutdownCalendar(s.target(), s.calendar_rules())
    signer = LinkSigner(s.cancel_link_secret)
    return send_shutdown_notices(
        at, calendar, options, signer, workspace, ledger or FakeLedger(), mailer, NO_WAIT
    )


def links_in(text: str) -> list[str]:
    return re.findall(r"https://\S+", text)


def test_one_mail_lists_every_running_instance_with_its_own_signed_link():
    mailer = FakeMailer()
    report = notify(fleet(), mailer)
    mail = mailer.to("ml-team@contoso.com")
    assert mail.instances == ("ci-alice", "ci-bob")
    assert mail.subject == "Compute instances stop tonight – ci-alice, ci-bob"
    assert "ci-carol" not in mail.text and "ci-carol" not in mail.html
    assert "Tuesday 24 November 2026 at 20:00 CET (Europe/Berlin)" in mail.text
    assert "ml-ws" in mail.html and "stopped only if the job has finished" in mail.text
    assert "will be stopped tonight at" in mail.text
    grants = [
        LinkSigner(TEST_SECRET).verify(parse_qs(urlsplit(u).query)["token"][0]) for u in links_in(mail.text)
    ]
    assert [(g.workspace, g.instance, g.day) for g in grants] == [
        (ARM_ID, "ci-alice", date(2026, 11, 24)),
        (ARM_ID, "ci-bob", date(2026, 11, 24)),
    ]
    assert report.mailed == ("ml-team@contoso.com",)


def test_links_keep_the_function_key_and_use_one_question_mark():
    mailer = FakeMailer()
    notify(fleet(), mailer)
    for url in links_in(mailer.to("ml-team@contoso.com").text):
        assert url.count("?") == 1 and parse_qs(urlsplit(url).query)["code"] == ["function-key-not-for-logs"]


def test_html_mail_escapes_and_text_mail_keeps_links_intact():
    mailer = FakeMailer()
    notify(fleet(), mailer)
    mail = mailer.to("ml-team@contoso.com")
    assert "&amp;token=" in mail.html and "&token=" in mail.text and "&amp;" not in mail.text


def test_owners_get_their_own_mail_when_asked():
    mailer = FakeMailer()
    notify(fleet(), mailer, notify_instance_owner="true")
    assert {m.to for m in mailer.sent} == {"ml-team@contoso.com", "alice@contoso.com", "bob@contoso.com"}
    assert mailer.to("alice@contoso.com").instances == ("ci-alice",)


def test_no_running_instance_means_no_mail_and_no_failure(caplog):
    caplog.set_level(logging.INFO)
    mailer = FakeMailer()
    notify(FakeWorkspace(Instance("ci-carol", "Stopped")), mailer)
    assert mailer.sent == [] and "mailed 0 recipient(s) about 0 instance(s)" in caplog.text


def test_a_failing_recipient_never_blocks_the_others_and_fails_the_run():
    mailer = FakeMailer()
    mailer.errors["alice@contoso.com"] = [TransientServiceError("SendGrid", "HTTP 503")] * 5
    with pytest.raises(RunFailedError) as failed:
        notify(fleet(), mailer, notify_instance_owner="true")
    assert {m.to for m in mailer.sent} == {"ml-team@contoso.com", "bob@contoso.com"}
    assert list(failed.value.failures) == ["alice@contoso.com"]
    assert "not told about ci-alice" in str(failed.value)


def test_transient_send_failures_are_retried_and_permanent_ones_are_not():
    mailer = FakeMailer()
    mailer.errors["ml-team@contoso.com"] = [TransientServiceError("SendGrid", "HTTP 502")]
    notify(fleet(), mailer)
    assert mailer.attempts == ["ml-team@contoso.com"] * 2

    mailer = FakeMailer()
    mailer.errors["ml-team@contoso.com"] = [CredentialsError("SendGrid", "401", ("SENDGRID_API_KEY",))]
    with pytest.raises(CredentialsError, match="SENDGRID_API_KEY"):
        notify(fleet(), mailer)
    assert mailer.attempts == ["ml-team@contoso.com"]


def test_a_rejected_api_key_is_one_clear_error_and_stops_further_sends():
    mailer = FakeMailer()
    rejected = CredentialsError("SendGrid", "HTTP 401", ("SENDGRID_API_KEY",))
    for owner in ("ml-team@contoso.com", "alice@contoso.com", "bob@contoso.com"):
        mailer.errors[owner] = [rejected]
    with pytest.raises(CredentialsError) as caught:
        notify(fleet(), mailer, notify_instance_owner="true", max_parallel="1")
    assert caught.value is rejected and mailer.attempts == ["ml-team@contoso.com"]


def test_dry_run_sends_nothing_and_never_logs_a_link(caplog):
    caplog.set_level(logging.DEBUG)
    mailer = FakeMailer()
    notify(fleet(), mailer, dry_run="true")
    assert mailer.sent == []
    assert "Dry run: would mail ml-team@contoso.com about ci-alice, ci-bob" in caplog.text
    assert "token" not in caplog.text and "function-key" not in caplog.text


def test_unknown_named_instance_fails_the_run_after_mailing_the_rest():
    mailer = FakeMailer()
    with pytest.raises(RunFailedError, match="ci-ghost"):
        notify(fleet(), mailer, aml_compute_instance="ci-alice,ci-ghost")
    assert mailer.to("ml-team@contoso.com").instances == ("ci-alice",)


def test_a_mail_before_a_shutdown_after_midnight_links_to_the_next_day():
    mailer = FakeMailer()
    late = datetime(2026, 11, 24, 22, 30, tzinfo=UTC)  # 23:30 Berlin, the minimum notice (30) before
    notify(fleet(), mailer, at=late, shutdown_time="00:10", warning_minutes="60")
    (url, _) = links_in(mailer.sent[0].text)
    grant = LinkSigner(TEST_SECRET).verify(parse_qs(urlsplit(url).query)["token"][0])
    assert grant.day == date(2026, 11, 25)
    assert grant.shutdown_at == datetime(2026, 11, 24, 23, 10, tzinfo=UTC)
    assert "will be stopped tonight at Wednesday 25 November 2026 at 00:10" in mailer.sent[0].text


def test_a_morning_shutdown_is_announced_as_today_not_tonight():
    mailer = FakeMailer()
    notify(
        fleet(),
        mailer,
        at=datetime(2026, 11, 24, 6, 30, tzinfo=UTC),
        shutdown_time="08:00",
        warning_minutes="60",
    )
    assert "will be stopped today at Tuesday 24 November 2026 at 08:00" in mailer.sent[0].text


def test_a_tick_outside_the_warning_window_makes_no_remote_call():
    workspace, ledger, mailer = fleet(), FakeLedger(), FakeMailer()
    for minutes in range(0, 24 * 60, 5):
        at = datetime(2026, 11, 24, 0, 0, tzinfo=UTC) + timedelta(minutes=minutes)
        # 17:00-22:00 Berlin: the warning window, then late notices until the main sweep's window closes
        if not 16 * 60 <= minutes <= 21 * 60:
            assert notify(workspace, mailer, ledger, at=at) is None
    assert workspace.calls == 0 and ledger.calls == 0 and mailer.attempts == []


def test_every_tick_in_the_window_mails_a_night_once():
    workspace, ledger, mailer = fleet(), FakeLedger(), FakeMailer()
    for minutes in range(0, 180, 5):
        notify(workspace, mailer, ledger, at=MAIL_AT + timedelta(minutes=minutes))
        if minutes == 0:
            first = dict(ledger.nights)
    assert [m.to for m in mailer.sent] == ["ml-team@contoso.com"]
    # Each later tick lists the workspace (for an instance started since) and writes nothing.
    assert workspace.list_calls == 36 and ledger.nights == first


def test_a_later_tick_mails_only_the_recipients_a_failed_tick_missed():
    workspace, ledger, mailer = fleet(), FakeLedger(), FakeMailer()
    mailer.errors["alice@contoso.com"] = [TransientServiceError("SendGrid", "HTTP 503")] * 3
    with pytest.raises(RunFailedError):
        notify(workspace, mailer, ledger, notify_instance_owner="true")
    notify(workspace, mailer, ledger, at=MAIL_AT + timedelta(minutes=5), notify_instance_owner="true")
    sent = sorted(m.to for m in mailer.sent)
    assert sent == ["alice@contoso.com", "bob@contoso.com", "ml-team@contoso.com"]  # each exactly once


def test_opted_out_instances_are_not_announced_but_counted(caplog):
    caplog.set_level(logging.INFO)
    mailer = FakeMailer()
    workspace = FakeWorkspace(
        Instance("ci-alice", "Running", "alice@contoso.com"),
        Instance("ci-zed", "Running", "zed@contoso.com", tags=(("auto-shutdown", "never"),)),
    )
    notify(workspace, mailer)
    mail = mailer.to("ml-team@contoso.com")
    assert mail.instances == ("ci-alice",) and "ci-zed" not in mail.text
    assert "Not stopped: 1 instance opted out with the auto-shutdown tag." in mail.text
    assert "opted out 1" in caplog.text
