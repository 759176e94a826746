"""Faults during the sweep, the click and the mail run: nothing lost, nothing stopped by mistake, and the
run ends in an error that names what failed. Retry waits are recorded by the injected sleep."""

import email.utils
import importlib
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.functions.timer import TimerRequest

from shared import app
from shared.errors import ConfigurationError, CredentialsError, RunFailedError, TransientServiceError
from shared.retry import RetryPolicy
from shared.sendgrid_mailer import SendGridMailer
from shared.settings import load_settings
from shared.sweep import SweepOptions, stop_unclaimed_instances

STOP = r"/computes/{}/stop$"
SUMMARY = "ComputeShutdown for the night of"


def seed(wire, *names):
    for name in names:
        wire.standins.azureml.seed(name, "Running", created_by=f"{name}@contoso.com")


def summary(caplog) -> str:
    return next(r.getMessage() for r in caplog.records if r.getMessage().startswith(SUMMARY))


# ---------------------------------------------------------------------------------- Azure, at sweep time
def test_retry_after_beyond_the_cap_fails_that_call_and_holds_back_the_whole_pool(wire, caplog):
    seed(wire, "ci-a", "ci-b", "ci-c")
    wire.configure(max_parallel="1")  # ci-a goes first; the others would be sent after its 429
    wire.standins.add_fault("arm", "POST", r"/stop$", status=429, headers={"Retry-After": "600"})
    with pytest.raises(RunFailedError, match="ci-a") as failed:
        wire.sweep()
    # ARM said "come back in 10 minutes": nobody else knocks again, and nobody sleeps that long.
    assert wire.standins.count("arm", "POST", r"/stop$") == 1 and wire.slept == []
    assert set(failed.value.failures) == {"ci-a", "ci-b", "ci-c"}
    assert "asked this run to wait 600 s" in failed.value.failures["ci-b"]
    assert "failed 3" in summary(caplog)


def _http_date(seconds_from_now: float) -> str:
    return email.utils.format_datetime(
        datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds_from_now), usegmt=True
    )


def test_a_retry_after_given_as_an_http_date_is_honoured_by_the_azureml_adapter(wire):
    seed(wire, "ci-a")
    wire.standins.add_fault(
        "arm", "POST", STOP.format("ci-a"), status=429, headers={"Retry-After": _http_date(9)}, times=1
    )
    wire.sweep()
    assert wire.standins.stopped_names() == ["ci-a"]
    (waited,) = wire.slept
    assert 6 <= waited < 10  # the date, less the seconds spent since; never the 0.5-1.5 s backoff


def test_a_retry_after_given_as_an_http_date_is_honoured_by_the_sendgrid_adapter(wire):
    seed(wire, "ci-a")
    wire.standins.add_fault("sendgrid", "POST", status=429, headers={"Retry-After": _http_date(9)}, times=1)
    wire.mail()
    assert len(wire.mails()) == 1
    (waited,) = wire.slept
    assert 6 <= waited < 10


def test_retry_after_zero_never_turns_into_a_burst_of_retries(wire):
    seed(wire, "ci-a")
    wire.standins.add_fault("arm", "POST", STOP.format("ci-a"), status=429, headers={"Retry-After": "0"})
    with pytest.raises(RunFailedError, match="ci-a"):
        wire.sweep()
    # four tries in all, even when the waits outlast the listing's freshness and it is listed again
    assert wire.standins.count("arm", "POST", STOP.format("ci-a")) == 4
    first, second, third = wire.slept  # the backoff: 1, 2, 4 s times [0.5, 1.5), plus the spread
    assert first >= 0.5 and second >= 1.0 and third >= 2.0


def test_one_throttled_stop_holds_back_the_whole_pool_instead_of_starting_a_storm(wire):
    names = [f"ci-{n:02d}" for n in range(20)]
    seed(wire, *names)
    wire.configure(max_parallel="4")
    wire.standins.latency = 0.05
    wire.standins.add_fault(
        "arm", "POST", r"/stop$", status=429, headers={"Retry-After": "1"}, skip=3, times=1
    )
    wire.now = wire.SWEEP_AT
    wire.told(wire.SWEEP_AT)
    app.bootstrap(sleep=time.sleep, monotonic=time.monotonic).compute_shutdown()  # real waits
    posts = wire.standins.records(service="arm", method="POST", path_regex=r"/stop$")
    (throttled,) = [r for r in posts if r.status == 429]
    during_hold = [r for r in posts if throttled.end < r.start < throttled.end + 0.9]
    assert len(during_hold) <= 3  # only calls already past their turn when the 429 came (max_parallel - 1)
    assert sorted(wire.standins.stopped_names()) == names


def test_503s_are_retried_with_exponential_backoff_and_jitter(wire):
    seed(wire, "ci-a")
    wire.standins.add_fault("arm", "POST", STOP.format("ci-a"), status=503, times=2)
    wire.sweep()
    assert wire.standins.stopped_names() == ["ci-a"]
    first, second = wire.slept  # 1 s then 2 s, each times a random factor in [0.5, 1.5)
    assert 0.5 <= first < 1.5 and 1.0 <= second < 3.0


def test_a_stop_that_hangs_fails_alone_within_the_budget(wire):
    seed(wire, "ci-a", "ci-b", "ci-c")
    wire.standins.add_fault("arm", "POST", STOP.format("ci-b"), delay=2.5)
    wire.told(wire.SWEEP_AT)
    the_app = app.bootstrap()
    started = time.perf_counter()
    with pytest.raises(RunFailedError, match=r"ci-b: no answer within the run's 1 s budget"):
        stop_unclaimed_instances(
            wire.SWEEP_AT, the_app.calendar, the_app.workspace, the_app.ledger, SweepOptions(),
            RetryPolicy(sleep=wire._sleep, clock=wire._monotonic), stop_budget=1.0,
        )  # fmt: skip
    assert time.perf_counter() - started < 2.0
    assert sorted(wire.standins.stopped_names()) == ["ci-a", "ci-c"]
    deadline = time.monotonic() + 5  # the abandoned call still completes later; let it land here
    while "ci-b" not in wire.standins.stopped_names():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.parametrize("status", [401, 500])
def test_azure_ad_failing_is_a_clear_error_and_nothing_is_stopped(wire, status):
    seed(wire, "ci-a")
    wire.standins.add_fault("aad", "POST", r"/oauth2/v2.0/token$", status=status)
    expected = CredentialsError if status == 401 else TransientServiceError
    with pytest.raises(expected, match=r"Azure AD|tenant_id|service_principal"):
        wire.sweep()
    assert wire.standins.stopped_names() == []


def test_the_summary_is_logged_even_when_the_listing_fails(wire, caplog):
    seed(wire, "ci-a")
    wire.standins.add_fault(wire.list_service, "GET", r"/computes$", status=500)
    with pytest.raises(TransientServiceError):
        wire.sweep()
    assert "stopped 0" in summary(caplog) and "nothing was stopped" in summary(caplog)
    assert wire.standins.count(wire.list_service, "GET", r"/computes$") == 4  # bounded retries


# ---------------------------------------------------------------------------------- the ledger
@pytest.mark.parametrize("status", [500, 503])
def test_ledger_errors_at_sweep_time_stop_nothing_and_fail_loudly(wire, caplog, status):
    seed(wire, "ci-a", "ci-b")
    wire.through_table_gate()
    wire.standins.add_fault("table", "GET", status=status)
    with pytest.raises(TransientServiceError, match="Table Storage"):
        wire.sweep()
    assert wire.standins.stopped_names() == []
    assert "nothing was stopped" in summary(caplog)


def test_ledger_errors_at_click_time_show_a_retry_page_never_a_false_success(wire):
    seed(wire, "ci-a")
    wire.mail()
    link = wire.link("ci-a")
    wire.through_table_gate()
    wire.standins.add_fault("table", "POST", status=500)
    page = wire.click("POST", link)
    body = page.get_body().decode()
    assert page.status_code == 503 and "Nothing was recorded" in body and "keeps running" not in body
    assert wire.ledger() == []
    wire.standins.traffic.clear_faults()
    assert wire.click("POST", link).status_code == 200 and len(wire.ledger()) == 1


def test_a_brief_ledger_hiccup_at_click_time_is_retried(wire):
    seed(wire, "ci-a")
    wire.mail()
    link = wire.link("ci-a")
    wire.through_table_gate()
    wire.standins.add_fault("table", "POST", status=503, times=1)
    assert wire.click("POST", link).status_code == 200
    assert len(wire.ledger()) == 1 and len(wire.slept) == 1 and wire.slept[0] <= 2


# ---------------------------------------------------------------------------------- mail
def test_a_sendgrid_timeout_is_retried(wire):
    seed(wire, "ci-a")
    wire.standins.add_fault("sendgrid", "POST", delay=1.5, times=1)
    settings = load_settings()
    mailer = SendGridMailer(settings.sendgrid_api_key, settings.from_email, timeout=0.5)
    report = app.bootstrap(settings, mailer=mailer).mail_sender()
    assert report.mailed == ("ml-team@contoso.com",) and len(wire.slept) == 1
    assert wire.mails()  # the retry landed (the slow first try may land too: at least once, never lost)
    deadline = time.monotonic() + 5  # let the abandoned first try land here, not in the next test's log
    while wire.standins.count("sendgrid", "POST") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_sendgrid_403_is_one_clear_error_naming_the_key(wire):
    seed(wire, "ci-a", "ci-b")
    wire.configure(notify_instance_owner="true", max_parallel="1")
    forbidden = {"errors": [{"field": None, "message": "access forbidden", "help": None}]}
    wire.standins.add_fault("sendgrid", "POST", status=403, body=forbidden)
    with pytest.raises(CredentialsError, match="SENDGRID_API_KEY"):
        wire.mail()
    assert wire.standins.count("sendgrid", "POST") == 1  # the other two recipients were not tried in vain


def test_an_unverified_sender_is_one_clear_error_naming_from_email(wire):
    seed(wire, "ci-a", "ci-b")
    wire.configure(notify_instance_owner="true", max_parallel="1")
    wire.standins.add_fault("sendgrid", "POST", status=403)  # SendGrid's usual 403: sender not verified
    with pytest.raises(CredentialsError, match="from_email"):
        wire.mail()
    assert wire.standins.count("sendgrid", "POST") == 1


# ---------------------------------------------------------------------------------- settings and timers
def test_every_function_reports_every_missing_setting_at_once(wire, monkeypatch):
    for name in wire.environ:
        monkeypatch.delenv(name, raising=False)
    for function in ("MailSender", "ComputeShutdown"):
        with pytest.raises(ConfigurationError) as caught:
            importlib.import_module(function).main(TimerRequest())
        problems = str(caught.value)
        for required in ("AzureWebJobsStorage", "subscription_id", "resource_group", "aml_workspace",
                         "aml_compute_instance", "SENDGRID_API_KEY", "func_cancel_shutdown", "from_email",
                         "cancel_link_secret"):  # fmt: skip
            assert f"{required} is required but missing" in problems
    assert wire.click("GET", "https://h/api/CancelShutDown?token=x").status_code == 500  # misconfigured
    assert wire.standins.log == []  # nothing was called


def test_a_past_due_run_works_once_and_a_second_tick_of_the_night_does_nothing(wire, caplog):
    caplog.set_level(logging.INFO)
    seed(wire, "ci-a", "ci-b")
    wire.now = wire.SWEEP_AT
    wire.told(wire.SWEEP_AT)
    importlib.import_module("ComputeShutdown").main(TimerRequest(past_due=True))
    assert sorted(wire.standins.stopped_names()) == ["ci-a", "ci-b"]
    wire.standins.traffic.clear_log()
    caplog.clear()
    wire.now = wire.SWEEP_AT + timedelta(minutes=5)
    importlib.import_module("ComputeShutdown").main(TimerRequest())  # the night's sweep is done
    assert wire.standins.log == [] and SUMMARY not in caplog.text  # not even a listing
