"""Each function's main(), called with real azure.functions objects and the fakes behind shared.app."""

import importlib
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from shared import app
from shared.domain import Instance
from shared.errors import ConfigurationError, RunFailedError, TransientServiceError
from tests.fakes import VALID_ENVIRON, FakeLedger, FakeMailer, FakeWorkspace

MailSender = importlib.import_module("MailSender")
CancelShutDown = importlib.import_module("CancelShutDown")
ComputeShutdown = importlib.import_module("ComputeShutdown")

REAL_BOOTSTRAP = app.bootstrap  # captured before any test wraps it
MAIL_AT = datetime(2026, 11, 24, 16, tzinfo=UTC)
SWEEP_AT = datetime(2026, 11, 24, 19, 0, 1, tzinfo=UTC)


class World:
    """The three functions' main(), wired by app.bootstrap to recording fakes and a clock the test sets."""

    def __init__(self, monkeypatch, real_ledger: bool = False, real_sleep: bool = False):
        self.now = MAIL_AT
        self.workspace = FakeWorkspace(
            Instance("ci-alice", "Running", "alice@contoso.com"),
            Instance("ci-bob", "Running", "bob@contoso.com"),
            Instance("ci-carol", "Stopped", "carol@contoso.com"),
        )
        self.ledger, self.mailer = FakeLedger(told=lambda night: list(self.workspace.instances)), FakeMailer()
        self.slept: list[float] = []

        def bootstrap(settings=None, **given):
            sleep = time.sleep if real_sleep else self.slept.append
            fakes = dict(workspace=self.workspace, mailer=self.mailer, clock=lambda: self.now, sleep=sleep)
            if not real_ledger:
                fakes["ledger"] = self.ledger
            return REAL_BOOTSTRAP(settings, **{**fakes, **given})

        monkeypatch.setattr(app, "bootstrap", bootstrap)
        monkeypatch.delenv("TZ", raising=False)
        for name, value in VALID_ENVIRON.items():
            monkeypatch.setenv(name, value)


@pytest.fixture
def world(monkeypatch) -> World:
    return World(monkeypatch)


def request(method: str, url: str, headers=None, body=b"") -> func.HttpRequest:
    params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    return func.HttpRequest(method, url, headers=headers or {}, params=params, body=body)


def link_of(world: World, instance: str) -> str:
    text = world.mailer.to("ml-team@contoso.com").text
    return re.search(rf"\* {instance} .*\n  Keep it running tonight: (\S+)", text).group(1)


def test_the_whole_evening_through_the_entry_points(world, caplog):
    caplog.set_level(logging.INFO)
    MailSender.main(TimerRequest())
    assert world.mailer.to("ml-team@contoso.com").instances == ("ci-alice", "ci-bob")

    link = link_of(world, "ci-bob")
    shown = CancelShutDown.main(request("GET", link))
    page = shown.get_body().decode()
    assert shown.status_code == 200 and '<form method="post" class="choices">' in page and "ci-bob" in page
    assert 'name="delay" value="60"' in page and 'value="120"' in page and 'value="night"' in page
    assert world.ledger.record_calls == 0  # GET never writes

    clicked = CancelShutDown.main(
        request("POST", link, {"X-Forwarded-For": "203.0.113.7:5123", "User-Agent": "UA/1"})
    )
    assert clicked.status_code == 200 and "ci-bob keeps running tonight" in clicked.get_body().decode()
    (record,) = world.ledger.records.values()
    assert (record.instance, record.client_ip, record.user_agent) == ("ci-bob", "203.0.113.7:5123", "UA/1")
    assert record.requested_at == MAIL_AT

    again = CancelShutDown.main(request("POST", link))
    assert again.get_body() == clicked.get_body() and len(world.ledger.records) == 1

    world.now = SWEEP_AT
    ComputeShutdown.main(TimerRequest())
    assert world.workspace.stopped == ["ci-alice", "ci-carol"]
    assert world.workspace.stop_calls == ["ci-alice"]
    assert "stopped 1, kept by request 1, busy with a job 0, not running 1, opted out 0" in caplog.text


def test_head_shows_nothing_and_writes_nothing(world):
    MailSender.main(TimerRequest())
    response = CancelShutDown.main(request("HEAD", link_of(world, "ci-alice")))
    assert response.status_code == 200 and response.get_body() == b"" and world.ledger.record_calls == 0


def test_a_tampered_link_gets_a_4xx_page_and_writes_nothing(world):
    MailSender.main(TimerRequest())
    link = link_of(world, "ci-alice")
    tampered = link[:-3] + ("xyz" if not link.endswith("xyz") else "abc")
    for method in ("GET", "POST"):
        response = CancelShutDown.main(request(method, tampered))
        assert response.status_code == 400
        assert "damaged or was not issued" in response.get_body().decode()
    assert world.ledger.record_calls == 0


def test_missing_token_unknown_method_and_expired_link(world):
    MailSender.main(TimerRequest())
    link = link_of(world, "ci-alice")
    missing = CancelShutDown.main(request("GET", "https://h/api/CancelShutDown?code=k"))
    assert missing.status_code == 400 and "incomplete" in missing.get_body().decode()
    put = CancelShutDown.main(request("PUT", link))
    assert put.status_code == 405 and put.headers["Allow"] == "GET, HEAD, POST"
    world.now = SWEEP_AT
    expired = CancelShutDown.main(request("POST", link))
    assert expired.status_code == 410 and "was stopped by the shutdown on" in expired.get_body().decode()
    assert world.ledger.record_calls == 0


def test_pages_forbid_caching_framing_and_referrers(world):
    MailSender.main(TimerRequest())
    headers = CancelShutDown.main(request("GET", link_of(world, "ci-alice"))).headers
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Content-Type"].startswith("text/html")


def test_ledger_down_at_click_time_is_a_503_never_a_success(world):
    MailSender.main(TimerRequest())
    world.ledger.errors = [TransientServiceError("Table Storage", "refused")] * 10
    response = CancelShutDown.main(request("POST", link_of(world, "ci-alice")))
    body = response.get_body().decode()
    assert response.status_code == 503 and "Nothing was recorded" in body and "keeps running" not in body
    assert world.ledger.records == {}


def test_misconfiguration_is_an_error_log_naming_the_setting_and_an_honest_page(world, monkeypatch, caplog):
    monkeypatch.setenv("cancel_link_secret", "short")
    response = CancelShutDown.main(request("GET", "https://h/api/CancelShutDown?token=x"))
    body = response.get_body().decode()
    assert response.status_code == 500 and "misconfigured" in body
    assert "shutdown still applies" in body and "try again in a minute" not in body.lower()
    (line,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (
        line.getMessage().startswith("CancelShutDown is misconfigured")
        and "cancel_link_secret" in line.getMessage()
    )
    with pytest.raises(ConfigurationError, match="cancel_link_secret"):
        ComputeShutdown.main(TimerRequest())
    assert world.workspace.stop_calls == []


def test_instance_names_in_the_settings_match_azure_without_case(world, monkeypatch):
    monkeypatch.setenv("aml_compute_instance", "CI-Alice")
    MailSender.main(TimerRequest())
    assert world.mailer.to("ml-team@contoso.com").instances == ("ci-alice",)  # Azure's spelling
    assert CancelShutDown.main(request("POST", link_of(world, "ci-alice"))).status_code == 200
    world.now = SWEEP_AT
    ComputeShutdown.main(TimerRequest())  # not "CI-Alice: not found": the run succeeds
    assert world.workspace.stop_calls == []  # kept by the click


def test_an_unexpected_bug_is_a_500_page_and_is_logged(world, monkeypatch, caplog):
    MailSender.main(TimerRequest())
    link = link_of(world, "ci-alice")
    monkeypatch.setattr(world.ledger, "record", lambda night, cancellation: 1 / 0)
    response = CancelShutDown.main(request("POST", link))
    assert response.status_code == 500 and "CancelShutDown failed unexpectedly" in caplog.text


def test_a_past_due_timer_still_does_its_work_once(world, caplog):
    world.now = SWEEP_AT + timedelta(minutes=7)
    ComputeShutdown.main(TimerRequest(past_due=True))
    assert sorted(world.workspace.stop_calls) == ["ci-alice", "ci-bob"]
    assert "running late" in caplog.text


def test_a_failed_stop_is_retried_then_fails_the_timer_run_after_the_others_stop(world):
    world.now = SWEEP_AT
    world.workspace.stop_errors["ci-alice"] = [TransientServiceError("AzureML", "HTTP 500")] * 10
    with pytest.raises(RunFailedError, match="ci-alice"):
        ComputeShutdown.main(TimerRequest())
    assert world.workspace.stop_calls.count("ci-alice") == 4 and len(world.slept) == 3
    assert "ci-bob" in world.workspace.stopped
